//! The engine and its instance pool: one wasmtime `Engine` per process, linked once with WASI
//! (no capability) and the host imports of `wit/`; compiling a component into a [`Plugin`]; the
//! thread that advances epochs for deadlines; and the sandbox's counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::admission::{MemoryBudget, default_memory_budget_mb};
use super::bindings::Decider;
use super::bindings::DeciderPre;
use super::bindings::recorder::RecorderPre;
use super::error::{SandboxError, host_setup};
use super::limits::MAX_MEMORY_MB;
use super::meter;
use super::state::CallState;

/// How often the epoch advances; a deadline is honoured to within one tick.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bytes of a linear memory (and of a table) the pool keeps resident between calls when the
/// kernel can tell dirty pages apart (`PAGEMAP_SCAN`, Linux 6.7+); without it, resetting a large
/// resident region costs more than it saves, so nothing is kept.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;
/// Instances whose reset may wait until after their call's answer, at most, at one moment. The
/// pool has this many slots beyond `max_concurrent_calls`, so a pending reset never takes a call's
/// slot.
pub(super) const DEFERRED_RESETS: u32 = 8;
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

/// Sizes of the instance pool.
#[derive(Debug, Clone, Copy)]
pub struct SandboxOptions {
    /// Calls that may hold an instance at the same moment; beyond it a call fails `overloaded`.
    /// The pool holds a few more instances than this: a slow-to-reset instance (a Python
    /// plugin's) goes back to it just after its call's answer, in a slot kept for that.
    pub max_concurrent_calls: u32,
    /// The most calls one tenant may run at once (at most `max_concurrent_calls`), unless the
    /// operator gives the tenant a cap of its own.
    pub max_calls_per_tenant: u32,
    /// The most memory all calls in flight may use together, in MiB: a call is admitted only
    /// while the memory caps of the calls running, its own included, add up to no more.
    pub memory_budget_mb: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 256,
            max_calls_per_tenant: 64,
            memory_budget_mb: default_memory_budget_mb(),
        }
    }
}

/// A compiled plugin, ready to instantiate. Cheap to share; never compiled again.
///
/// It has at least one of the two exports; each is looked up once, here.
pub struct Plugin {
    pub(super) decider: Option<DeciderPre<CallState>>,
    pub(super) recorder: Option<RecorderPre<CallState>>,
    /// Whether its last instance took [`DEFER_RESET_FROM`](super::calls::DEFER_RESET_FROM) or more
    /// to reset (false before the first call).
    pub(super) slow_reset: Arc<AtomicBool>,
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
    pub(super) engine: Engine,
    linker: Linker<CallState>,
    pub(super) max_calls: usize,
    calls_per_tenant: u32,
    pub(super) in_flight: AtomicUsize,
    pub(super) memory: MemoryBudget,
    /// Instances waiting for their reset after their call's answer.
    pub(super) resets_pending: Arc<AtomicUsize>,
    pub(super) resets_deferred: AtomicU64,
    /// Whether a slow reset may happen after its call's answer (see `Sandbox::release`).
    pub(super) defer_resets: bool,
    pub(super) compiles: AtomicU64,
    _ticker: EpochTicker,
}

impl Sandbox {
    /// Builds the engine (component model, fuel, epochs, pooling allocator) and links WASI and
    /// the host imports.
    ///
    /// # Errors
    /// [`SandboxError::Host`] when wasmtime refuses the configuration (for example, the address
    /// space for the pool cannot be reserved).
    pub fn new(options: SandboxOptions) -> Result<Self, SandboxError> {
        let engine = Engine::new(&engine_config(options)).map_err(host_setup)?;
        let max_calls = usize::try_from(options.max_concurrent_calls.max(1)).unwrap_or(usize::MAX);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(host_setup)?;
        meter::link_random(&mut linker).map_err(host_setup)?;
        Decider::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(host_setup)?;
        let ticker = EpochTicker::start(&engine);
        Ok(Self {
            engine,
            linker,
            max_calls,
            calls_per_tenant: options
                .max_calls_per_tenant
                .clamp(1, options.max_concurrent_calls.max(1)),
            in_flight: AtomicUsize::new(0),
            memory: MemoryBudget::new(options.memory_budget_mb),
            resets_pending: Arc::default(),
            resets_deferred: AtomicU64::new(0),
            defer_resets: true,
            compiles: AtomicU64::new(0),
            _ticker: ticker,
        })
    }

    /// This sandbox resets every instance before its call returns, never after. For a caller
    /// that makes one call after another (`passthru run`), answering early gains nothing, while
    /// resets deferred faster than they complete would fill the pool: a Python component holds
    /// 14 core instances, and a pool sized for one call holds 64.
    pub fn without_deferred_resets(mut self) -> Self {
        self.defer_resets = false;
        self
    }

    /// The most calls one tenant may run at once, unless the operator says otherwise.
    pub fn calls_per_tenant(&self) -> u32 {
        self.calls_per_tenant
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

    /// How many components this sandbox has compiled with Cranelift, itself or in the compile
    /// worker (loading a cached artifact does not count).
    pub fn compile_count(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    pub(super) fn compile_component(&self, bytes: &[u8]) -> Result<Component, SandboxError> {
        check_header(bytes)?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        Component::from_binary(&self.engine, bytes)
            .map_err(|e| SandboxError::invalid(format!("the component does not compile: {e}")))
    }

    /// Links a compiled component against the host and finds its `decide` and `record` exports.
    pub(super) fn prepare(&self, component: &Component) -> Result<Plugin, SandboxError> {
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
}

/// The names a component exports (`decide`, `record`, and e.g. `init` from componentize-py).
pub(super) fn export_names(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
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

    let mut config = codegen_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// What decides the machine code Cranelift makes: shared by the server's engine and by the
/// compile worker's (which has no instance pool), so that an artifact from one loads in the
/// other. The pool changes where instances live, not the code (`precompile_compatibility_hash`
/// covers the compiler settings, tunables and features; a test checks both engines agree).
pub(super) fn codegen_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .concurrency_support(false)
        .consume_fuel(true)
        .epoch_interruption(true);
    config
}

/// The cheap check before any compile: the bytes start like a WebAssembly component.
///
/// # Errors
/// [`SandboxError::InvalidComponent`] saying what they look like instead.
pub fn check_header(bytes: &[u8]) -> Result<(), SandboxError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::FailureKind;

    /// An engine whose pool the address space cannot hold is the host's failure to set up, not
    /// the sandbox being at capacity.
    #[test]
    fn an_engine_the_host_cannot_build_is_a_host_failure_not_overloaded() {
        let failure = Sandbox::new(SandboxOptions {
            max_concurrent_calls: u32::MAX,
            ..SandboxOptions::default()
        })
        .err()
        .expect("a pool of 4 billion 1 GiB memories cannot be reserved");
        assert_eq!(failure.kind(), FailureKind::Host, "{failure:?}");
    }
}
