//! The sandbox: one wasmtime `Engine` per process, a compiled [`Plugin`] per component, and a
//! fresh `Store` per call with a fuel budget, a wall-clock deadline and a memory cap.
//!
//! Link once per engine (WASI with no capability, and the host imports of `wit/`), prepare once
//! per plugin (`InstancePre` with its exports already looked up), and per call only create a
//! `Store`, instantiate from the pool and call `decide` (sync flows) or `record` (async flows). Failures are typed ([`SandboxError`]),
//! classified from wasmtime's `Trap` codes and the limiter's own record, never from messages.

mod bindings;
mod convert;
mod output;
mod precompiled;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::runtime::RuntimeFlavor;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, Trap,
};

pub use output::{LogLevel, LogLine, MAX_LOG_BYTES, MAX_LOG_LINES, trace_lines};
pub use precompiled::{Compiled, hex_sha256};
pub use state::FlowConfig;

use bindings::recorder::RecorderPre;
use bindings::{Decider, DeciderPre};
use state::{CallState, LimitHit};

use crate::call::CallDetails;

/// Fuel a call gets unless its flow says otherwise (about as many wasm instructions).
pub const DEFAULT_FUEL: u64 = 10_000_000;
/// Wall-clock time a call gets unless its flow says otherwise.
pub const DEFAULT_DEADLINE_MS: u64 = 50;
/// Memory a call gets unless its flow says otherwise, all its linear memories together.
pub const DEFAULT_MEMORY_MB: u64 = 64;
/// The longest deadline a flow may ask for. Exotel waits about 15 s; a decision should not.
pub const MAX_DEADLINE_MS: u64 = 10_000;
/// The most memory a flow may ask for, and the size of each memory slot in the pool.
pub const MAX_MEMORY_MB: u64 = 1024;
/// The longest a reason from a plugin is kept; longer ones are cut.
pub const MAX_REASON_BYTES: usize = 1024;

/// How often the epoch advances; a deadline is honoured to within one tick.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// A guest yields to the executor after this much fuel (some tens of microseconds of its code),
/// so one call never holds a worker thread for long. Each yield costs about a microsecond: at
/// 20,000, a JavaScript decision (3.4 million fuel) spent 15% of its time yielding.
const FUEL_YIELD_INTERVAL: u64 = 100_000;
/// Bytes of a linear memory (and of a table) the pool keeps resident between calls when the
/// kernel can tell dirty pages apart (`PAGEMAP_SCAN`, Linux 6.7+); without it, resetting a large
/// resident region costs more than it saves, so nothing is kept.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;
/// Instances whose reset may wait until after their call's answer, at most, at one moment. The
/// pool has this many slots beyond `max_concurrent_calls`, so a pending reset never takes a call's
/// slot.
const DEFERRED_RESETS: u32 = 8;
/// A plugin whose instance took at least this long to reset, last time, is reset after the answer.
/// A Rust or C plugin's reset takes a few microseconds, less than handing it to another task would
/// cost; a Python or JavaScript runtime's takes 50 to 150.
const DEFER_RESET_FROM: Duration = Duration::from_micros(20);

/// The most core instances, linear memories and tables one component may hold.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MAX_MEMORIES_PER_COMPONENT: u32 = 16;
const MAX_TABLES_PER_COMPONENT: u32 = 64;
/// What the pool reserves per call slot: a Rust, C or componentize-js component holds 2 to 4 core
/// instances, one or two memories and a few tables. One from componentize-py holds 14 core
/// instances (CPython and its libraries are separate modules), so it takes several slots' worth.
const TYPICAL_CORE_INSTANCES: u32 = 4;
const TYPICAL_MEMORIES: u32 = 2;
const TYPICAL_TABLES: u32 = 4;

/// What a flow allows one call of its plugin. An omitted limit takes its default. The server
/// answers 422 unless `fuel` is at least 1, `deadline_ms` is 1 to 10000 and `memory_mb` is 1 to
/// 1024, and each is within the tenant's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel: roughly, wasm instructions.
    pub fuel: u64,
    /// Wall-clock time for instantiation and `decide` together.
    pub deadline_ms: u64,
    /// All linear memories of the instance together.
    pub memory_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            deadline_ms: DEFAULT_DEADLINE_MS,
            memory_mb: DEFAULT_MEMORY_MB,
        }
    }
}

impl Limits {
    /// Checks the limits against what the host allows.
    ///
    /// # Errors
    /// A message naming the limit that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.fuel == 0 {
            return Err("fuel must be at least 1".into());
        }
        if !(1..=MAX_DEADLINE_MS).contains(&self.deadline_ms) {
            return Err(format!(
                "deadline_ms must be between 1 and {MAX_DEADLINE_MS}, not {}",
                self.deadline_ms
            ));
        }
        if !(1..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return Err(format!(
                "memory_mb must be between 1 and {MAX_MEMORY_MB}, not {}",
                self.memory_mb
            ));
        }
        Ok(())
    }

    fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

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

/// The kind of a failed call, as reported in logs, records and `passthru run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    OutOfFuel,
    Deadline,
    MemoryLimit,
    Trap,
    InvalidComponent,
    /// `record` returned an error of its own.
    PluginError,
    /// No instance slot was free in the pool: the host is at capacity, not the plugin's fault.
    Overloaded,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::Deadline => "deadline",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Trap => "trap",
            FailureKind::InvalidComponent => "invalid_component",
            FailureKind::PluginError => "plugin_error",
            FailureKind::Overloaded => "overloaded",
        }
    }
}

/// Why a plugin could not be loaded or could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("the plugin ran out of fuel (budget {fuel})")]
    OutOfFuel { fuel: u64 },
    #[error("the plugin passed its deadline of {deadline_ms} ms")]
    Deadline { deadline_ms: u64 },
    #[error("the plugin went over its memory cap of {limit_mb} MiB (asked for {requested})")]
    MemoryLimit { limit_mb: u64, requested: String },
    #[error("the plugin trapped: {message}")]
    Trap { message: String },
    #[error("invalid component: {message}")]
    InvalidComponent { message: String },
    #[error("the plugin reported a failure: {message}")]
    PluginError { message: String },
    #[error("the sandbox is at capacity: {message}")]
    Overloaded { message: String },
}

impl SandboxError {
    pub fn kind(&self) -> FailureKind {
        match self {
            SandboxError::OutOfFuel { .. } => FailureKind::OutOfFuel,
            SandboxError::Deadline { .. } => FailureKind::Deadline,
            SandboxError::MemoryLimit { .. } => FailureKind::MemoryLimit,
            SandboxError::Trap { .. } => FailureKind::Trap,
            SandboxError::InvalidComponent { .. } => FailureKind::InvalidComponent,
            SandboxError::PluginError { .. } => FailureKind::PluginError,
            SandboxError::Overloaded { .. } => FailureKind::Overloaded,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        SandboxError::InvalidComponent {
            message: message.into(),
        }
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

/// Sizes of the instance pool.
#[derive(Debug, Clone, Copy)]
pub struct SandboxOptions {
    /// Calls that may hold an instance at the same moment; beyond it a call fails `overloaded`.
    /// The pool holds a few more instances than this: a slow-to-reset instance (a Python
    /// plugin's) goes back to it just after its call's answer, in a slot kept for that.
    pub max_concurrent_calls: u32,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 256,
        }
    }
}

/// A compiled plugin, ready to instantiate. Cheap to share; never compiled again.
///
/// It has at least one of the two exports; each is looked up once, here.
pub struct Plugin {
    decider: Option<DeciderPre<CallState>>,
    recorder: Option<RecorderPre<CallState>>,
    /// Whether its last instance took [`DEFER_RESET_FROM`] or more to reset (false before the
    /// first call).
    slow_reset: Arc<AtomicBool>,
}

impl Plugin {
    /// Whether the plugin exports `decide` (it can serve a sync flow).
    pub fn can_decide(&self) -> bool {
        self.decider.is_some()
    }

    /// Whether the plugin exports `record` (it can serve an async flow).
    pub fn can_record(&self) -> bool {
        self.recorder.is_some()
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").finish_non_exhaustive()
    }
}

/// The process's one engine, its linker, and the thread that drives deadlines.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<CallState>,
    max_calls: usize,
    in_flight: AtomicUsize,
    /// Instances waiting for their reset after their call's answer.
    resets_pending: Arc<AtomicUsize>,
    resets_deferred: AtomicU64,
    compiles: AtomicU64,
    _ticker: EpochTicker,
}

impl Sandbox {
    /// Builds the engine (component model, fuel, epochs, pooling allocator) and links WASI and
    /// the host imports.
    ///
    /// # Errors
    /// When wasmtime refuses the configuration (for example, the address space for the pool
    /// cannot be reserved).
    pub fn new(options: SandboxOptions) -> Result<Self, SandboxError> {
        let engine = Engine::new(&engine_config(options)).map_err(host_setup)?;
        let max_calls = usize::try_from(options.max_concurrent_calls.max(1)).unwrap_or(usize::MAX);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(host_setup)?;
        Decider::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(host_setup)?;
        let ticker = EpochTicker::start(&engine);
        Ok(Self {
            engine,
            linker,
            max_calls,
            in_flight: AtomicUsize::new(0),
            resets_pending: Arc::default(),
            resets_deferred: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
            _ticker: ticker,
        })
    }

    /// Calls running right now.
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// How many instances have been reset after their call's answer rather than before it.
    pub fn resets_deferred(&self) -> u64 {
        self.resets_deferred.load(Ordering::Relaxed)
    }

    /// Validates and compiles a component. This is the slow step (milliseconds to seconds): call
    /// it at start-up or upload time, never on the request path.
    ///
    /// # Errors
    /// [`SandboxError::InvalidComponent`] with a message that says what is wrong: not wasm, a
    /// core module instead of a component, imports the host does not provide, neither `decide`
    /// nor `record` exported, or one of them not of the type the WIT defines.
    pub fn compile(&self, bytes: &[u8]) -> Result<Plugin, SandboxError> {
        let component = self.compile_component(bytes)?;
        self.prepare(&component)
    }

    /// How many components this sandbox has compiled with Cranelift (loading a cached artifact
    /// does not count).
    pub fn compile_count(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    fn compile_component(&self, bytes: &[u8]) -> Result<Component, SandboxError> {
        check_header(bytes)?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        Component::from_binary(&self.engine, bytes)
            .map_err(|e| SandboxError::invalid(format!("the component does not compile: {e}")))
    }

    /// Links a compiled component against the host and finds its `decide` and `record` exports.
    fn prepare(&self, component: &Component) -> Result<Plugin, SandboxError> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            SandboxError::invalid(format!(
                "the component imports something the host does not provide: {e}"
            ))
        })?;
        let exports = export_names(&self.engine, component);
        let has = |name: &str| exports.iter().any(|e| e == name);
        let wrong_type = |name: &str, e: wasmtime::Error| {
            SandboxError::invalid(format!(
                "the component exports `{name}`, but not of the type package \
                 passthru:plugin@0.1.1 defines: {e}"
            ))
        };
        let decider = match has("decide") {
            true => Some(DeciderPre::new(pre.clone()).map_err(|e| wrong_type("decide", e))?),
            false => None,
        };
        let recorder = match has("record") {
            true => Some(RecorderPre::new(pre).map_err(|e| wrong_type("record", e))?),
            false => None,
        };
        if decider.is_none() && recorder.is_none() {
            return Err(SandboxError::invalid(format!(
                "the component exports neither `decide` (world passthru:plugin/decider) nor \
                 `record` (world passthru:plugin/recorder); it exports {exports:?}"
            )));
        }
        Ok(Plugin {
            decider,
            recorder,
            slow_reset: Arc::default(),
        })
    }

    /// Runs one call: a fresh instance of `plugin`, `decide(call)`, under `limits`.
    ///
    /// Never panics and never returns early: every failure is in the report's `outcome`.
    pub async fn decide(
        &self,
        plugin: &Plugin,
        call: CallDetails,
        limits: &Limits,
        config: Arc<FlowConfig>,
    ) -> CallReport {
        let Some(_in_flight) = InFlight::enter(&self.in_flight, self.max_calls) else {
            return refused(self.max_calls);
        };
        let (mut store, started) = self.new_store(limits, config);
        let outcome = match (&plugin.decider, prepare_store(&mut store, limits)) {
            (_, Err(error)) => Err(error),
            (None, Ok(())) => Err(missing_export("decide")),
            (Some(pre), Ok(())) => {
                let call = call.into();
                let run = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance.call_decide(&mut store, &call).await
                };
                let done = tokio::time::timeout(limits.deadline(), run).await;
                settle(done, store.data(), limits).map(Decision::from)
            }
        };
        self.finish(plugin, store, started, outcome, limits)
    }

    /// Runs one attempt of an async flow's event: a fresh instance of `plugin`,
    /// `record(event, call)`, under `limits`. An `err` from the plugin is
    /// [`SandboxError::PluginError`].
    ///
    /// Never panics and never returns early: every failure is in the report's `outcome`.
    pub async fn record(
        &self,
        plugin: &Plugin,
        event: Event,
        call: CallDetails,
        limits: &Limits,
        config: Arc<FlowConfig>,
    ) -> RecordReport {
        let Some(_in_flight) = InFlight::enter(&self.in_flight, self.max_calls) else {
            return refused(self.max_calls);
        };
        let (mut store, started) = self.new_store(limits, config);
        let outcome = match (&plugin.recorder, prepare_store(&mut store, limits)) {
            (_, Err(error)) => Err(error),
            (None, Ok(())) => Err(missing_export("record")),
            (Some(pre), Ok(())) => {
                let call = call.into();
                let event = bindings::passthru::plugin::types::Event {
                    id: event.id,
                    attempt: event.attempt,
                    accepted_at_ms: event.accepted_at_ms,
                };
                let run = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance.call_record(&mut store, event, &call).await
                };
                let done = tokio::time::timeout(limits.deadline(), run).await;
                settle(done, store.data(), limits).and_then(|said| {
                    said.map_err(|mut message| {
                        message.truncate(output::truncate(&message, MAX_REASON_BYTES).len());
                        SandboxError::PluginError { message }
                    })
                })
            }
        };
        self.finish(plugin, store, started, outcome, limits)
    }

    /// A store for one call, with its memory cap and the flow's config.
    fn new_store(&self, limits: &Limits, config: Arc<FlowConfig>) -> (Store<CallState>, Instant) {
        let memory_bytes = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
        let mut store = Store::new(&self.engine, CallState::new(memory_bytes, config));
        store.limiter(|state| &mut state.limiter);
        (store, Instant::now())
    }

    /// Ends a call: what it cost, its log, and a trap's message completed with what the plugin
    /// wrote to stderr just before.
    fn finish<T>(
        &self,
        plugin: &Plugin,
        store: Store<CallState>,
        started: Instant,
        outcome: Result<T, SandboxError>,
        limits: &Limits,
    ) -> Report<T> {
        let elapsed = started.elapsed();
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0).min(limits.fuel);
        let log = store.data().log.clone();
        self.release(plugin, store);

        let mut log = log.lock();
        log.finish();
        let outcome = outcome.map_err(|error| match error {
            SandboxError::Trap { message } => SandboxError::Trap {
                message: match log.stderr_tail(2) {
                    Some(said) => format!("{message}; the plugin said: {said}"),
                    None => message,
                },
            },
            other => other,
        });
        Report {
            outcome,
            fuel_used,
            elapsed,
            log: std::mem::take(&mut log.lines),
            log_dropped: log.dropped,
        }
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
        if plugin.slow_reset.load(Ordering::Relaxed)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && runtime.runtime_flavor() == RuntimeFlavor::MultiThread
            && let Some(claim) = PendingReset::claim(&self.resets_pending)
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

/// The outcome of a call that ran: its value, or the failure named.
///
/// The epoch deadline stops a guest that computes; the timeout around the call (`done` is its
/// result) also stops one that waits in a host call (a WASI sleep, say), which epochs cannot
/// interrupt.
fn settle<T>(
    done: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    state: &CallState,
    limits: &Limits,
) -> Result<T, SandboxError> {
    match done {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(classify(&error, state, limits)),
        Err(_elapsed) => Err(SandboxError::Deadline {
            deadline_ms: limits.deadline_ms,
        }),
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

/// The report of a call refused because `max` calls are running already.
fn refused<T>(max: usize) -> Report<T> {
    Report {
        outcome: Err(SandboxError::Overloaded {
            message: format!(
                "{max} plugin calls are running already, the most this server runs at once"
            ),
        }),
        fuel_used: 0,
        elapsed: Duration::ZERO,
        log: Vec::new(),
        log_dropped: 0,
    }
}

fn missing_export(name: &str) -> SandboxError {
    SandboxError::invalid(format!("this plugin version does not export `{name}`"))
}

/// The names a component exports (`decide`, `record`, and e.g. `init` from componentize-py).
pub(crate) fn export_names(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Counts a call as in flight until dropped, whether the call finishes or is abandoned.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counts a call in, unless `max` are in flight already.
    fn enter(counter: &'a AtomicUsize, max: usize) -> Option<Self> {
        if counter.fetch_add(1, Ordering::Relaxed) >= max {
            counter.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Self(counter))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A claim on one of the pool's slots kept for instances reset after their answer; given back
/// when dropped.
struct PendingReset(Arc<AtomicUsize>);

impl PendingReset {
    fn claim(pending: &Arc<AtomicUsize>) -> Option<Self> {
        if pending.fetch_add(1, Ordering::Relaxed) >= DEFERRED_RESETS as usize {
            pending.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Self(pending.clone()))
    }
}

impl Drop for PendingReset {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn engine_config(options: SandboxOptions) -> Config {
    // The calls, and the instances waiting for their reset after their call's answer.
    let slots = options
        .max_concurrent_calls
        .max(1)
        .saturating_add(DEFERRED_RESETS);
    // A pool sized for `slots` calls of a typical component, and never too small for one call of
    // the largest component the per-component caps allow: otherwise a sandbox with few slots (the
    // runner has one) could not run a Python plugin at all.
    let total = |typical: u32, per_component: u32| slots.saturating_mul(typical).max(per_component);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(total(
            TYPICAL_CORE_INSTANCES,
            MAX_CORE_INSTANCES_PER_COMPONENT,
        ))
        .total_memories(total(TYPICAL_MEMORIES, MAX_MEMORIES_PER_COMPONENT))
        .total_tables(total(TYPICAL_TABLES, MAX_TABLES_PER_COMPONENT))
        .total_stacks(slots)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_memory_size(usize::try_from(MAX_MEMORY_MB << 20).unwrap_or(usize::MAX));
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES);
    }

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .concurrency_support(false)
        .consume_fuel(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

fn host_setup(error: wasmtime::Error) -> SandboxError {
    SandboxError::Overloaded {
        message: format!("the sandbox could not be set up: {error:#}"),
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

/// Names the cause of a failed call: the limiter's record first (a refused growth surfaces as an
/// error of ours), then wasmtime's trap code, then the pool.
fn classify(error: &wasmtime::Error, state: &CallState, limits: &Limits) -> SandboxError {
    if let Some(hit) = state.limiter.hit {
        let requested = match hit {
            LimitHit::Memory { requested_bytes } => {
                format!("{} MiB", requested_bytes.div_ceil(1 << 20))
            }
            LimitHit::Table { requested_elements } => {
                format!("{requested_elements} table elements")
            }
        };
        return SandboxError::MemoryLimit {
            limit_mb: limits.memory_mb,
            requested,
        };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => SandboxError::OutOfFuel { fuel: limits.fuel },
            Trap::Interrupt => SandboxError::Deadline {
                deadline_ms: limits.deadline_ms,
            },
            other => SandboxError::Trap {
                message: other.to_string(),
            },
        };
    }
    if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return SandboxError::Overloaded {
            message: error.to_string(),
        };
    }
    SandboxError::Trap {
        message: format!("{error:#}"),
    }
}

fn check_header(bytes: &[u8]) -> Result<(), SandboxError> {
    const MAGIC: &[u8; 4] = b"\0asm";
    const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
    const COMPONENT_LAYER: [u8; 2] = [1, 0];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(SandboxError::invalid(
            "not a WebAssembly binary (it does not start with \\0asm)",
        ));
    }
    if bytes[4..8] == CORE_VERSION {
        return Err(SandboxError::invalid(
            "this is a core WebAssembly module, not a component: build for wasm32-wasip2, or \
             turn the module into a component with `wasm-tools component new`",
        ));
    }
    if bytes[6..8] != COMPONENT_LAYER {
        return Err(SandboxError::invalid(
            "not a WebAssembly binary format this host reads (unknown version or layer)",
        ));
    }
    Ok(())
}

impl From<bindings::passthru::plugin::types::Decision> for Decision {
    fn from(d: bindings::passthru::plugin::types::Decision) -> Self {
        use bindings::passthru::plugin::types::Branch as WitBranch;
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

/// Advances the engine's epoch every [`EPOCH_TICK`], on a plain thread, until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let flag = stop.clone();
        let spawned = thread::Builder::new()
            .name("passthru-epoch".into())
            .spawn(move || {
                // Ticks are scheduled from a fixed origin so that sleep overshoot does not add
                // up: a 50-tick deadline stays close to 50 ms.
                let origin = Instant::now();
                let tick_ns = EPOCH_TICK.as_nanos() as u64;
                let mut n: u64 = 0;
                while !flag.load(Ordering::Relaxed) {
                    n += 1;
                    let next = origin + Duration::from_nanos(n.saturating_mul(tick_ns));
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            });
        if let Err(error) = spawned {
            // Without the ticker, deadlines still hold through the async timeout in `decide`;
            // only a guest that never yields could overrun, and fuel bounds that.
            tracing::error!(%error, "could not start the epoch ticker thread");
        }
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
