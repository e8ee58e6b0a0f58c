//! The engine and its instance pool: one wasmtime `Engine` per process, linked once with WASI
//! (no capability) and the host imports of `wit/`; compiling a component into a [`Plugin`]; and
//! the sandbox's counters. The thread that advances epochs for deadlines is `ticker`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::admission::{MemoryBudget, default_memory_budget_mb};
use super::bindings::Decider;
use super::bindings::DeciderPre;
use super::bindings::connector::ConnectorPre;
use super::bindings::gatherer::GathererPre;
use super::bindings::greeter::GreeterPre;
use super::bindings::lean_decider::LeanDeciderPre;
use super::bindings::lean_decider::passthru::plugin::call as lean_call;
use super::bindings::recorder::RecorderPre;
use super::bindings::switcher::SwitcherPre;
use super::bindings::texter::TexterPre;
use super::error::{SandboxError, host_setup};
use super::hooks::HookExport;
use super::limits::MAX_MEMORY_MB;
use super::meter;
use super::outbound::OutboundOptions;
use super::state::CallState;
use super::ticker::EpochTicker;

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
/// What the pool reserves per call slot: a Rust, C or componentize-js component holds one or two
/// memories and a few tables. A component that needs more takes several slots (its weight, see
/// [`weight_of`]). Core instances are only counted by the pool (nothing is set aside for each), so
/// the pool allows every slot the most one component may hold: componentize-py's hold 14.
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
/// It has at least one of the exports the host calls; each is looked up once, here.
pub struct Plugin {
    pub(super) decider: Option<DeciderPre<CallState>>,
    /// `decide-lean` (0.1.4): called instead of `decide` when a component has both.
    pub(super) lean_decider: Option<LeanDeciderPre<CallState>>,
    pub(super) recorder: Option<RecorderPre<CallState>>,
    pub(super) switcher: Option<SwitcherPre<CallState>>,
    pub(super) greeter: Option<GreeterPre<CallState>>,
    pub(super) texter: Option<TexterPre<CallState>>,
    pub(super) connector: Option<ConnectorPre<CallState>>,
    pub(super) gatherer: Option<GathererPre<CallState>>,
    /// How many of the pool's slots one call takes: see [`weight_of`].
    pub(super) weight: u32,
    /// Whether its last instance took [`DEFER_RESET_FROM`](super::calls::DEFER_RESET_FROM) or more
    /// to reset (false before the first call).
    pub(super) slow_reset: Arc<AtomicBool>,
}

impl Plugin {
    /// Whether the plugin exports `decide` or `decide-lean` (it can serve a sync flow).
    pub fn can_decide(&self) -> bool {
        self.decider.is_some() || self.lean_decider.is_some()
    }

    /// Whether the plugin exports `record` (it can serve an async flow).
    pub fn can_record(&self) -> bool {
        self.recorder.is_some()
    }

    /// How many of the pool's call slots one call takes (1 for most components; a component
    /// with many memories or tables takes more).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The hooks of package 0.1.2 the plugin exports.
    pub fn hooks(&self) -> Vec<HookExport> {
        [
            (HookExport::Select, self.switcher.is_some()),
            (HookExport::Greeting, self.greeter.is_some()),
            (HookExport::Sms, self.texter.is_some()),
            (HookExport::Connect, self.connector.is_some()),
            (HookExport::Gather, self.gatherer.is_some()),
        ]
        .into_iter()
        .filter_map(|(hook, has)| has.then_some(hook))
        .collect()
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
    /// Calls running, by weight: shared with the epoch ticker, which parks when it is zero.
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) memory: MemoryBudget,
    /// Instances waiting for their reset after their call's answer.
    pub(super) resets_pending: Arc<AtomicUsize>,
    pub(super) resets_deferred: AtomicU64,
    /// Whether a slow reset may happen after its call's answer (see `Sandbox::release`).
    pub(super) defer_resets: bool,
    pub(super) compiles: AtomicU64,
    /// The operator's bounds on plugins' outbound requests.
    pub(super) outbound: Arc<OutboundOptions>,
    pub(super) ticker: EpochTicker,
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
        // Outbound HTTP: linked for every plugin, refused per request unless the flow lists
        // hosts (see `outbound`). A plugin that does not import it pays nothing for it.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(host_setup)?;
        meter::link_random(&mut linker).map_err(host_setup)?;
        Decider::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(host_setup)?;
        lean_call::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(host_setup)?;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let ticker = EpochTicker::start(&engine, in_flight.clone());
        Ok(Self {
            engine,
            linker,
            max_calls,
            calls_per_tenant: options
                .max_calls_per_tenant
                .clamp(1, options.max_concurrent_calls.max(1)),
            in_flight,
            memory: MemoryBudget::new(options.memory_budget_mb),
            resets_pending: Arc::default(),
            resets_deferred: AtomicU64::new(0),
            defer_resets: true,
            compiles: AtomicU64::new(0),
            outbound: Arc::default(),
            ticker,
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

    /// This sandbox's bounds on plugins' outbound requests (the defaults unless set here).
    pub fn with_outbound(mut self, options: OutboundOptions) -> Self {
        self.outbound = Arc::new(options);
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

    /// Whether the thread that advances epochs is parked: no call has begun for 100 ms.
    pub fn epoch_ticker_asleep(&self) -> bool {
        self.ticker.is_asleep()
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
                 passthru:plugin@0.1.4 defines: {e}"
            ))
        };
        macro_rules! export {
            ($name:literal, $pre:ident) => {
                match has($name) {
                    true => Some($pre::new(pre.clone()).map_err(|e| wrong_type($name, e))?),
                    false => None,
                }
            };
        }
        let plugin = Plugin {
            decider: export!("decide", DeciderPre),
            lean_decider: export!("decide-lean", LeanDeciderPre),
            recorder: export!("record", RecorderPre),
            switcher: export!("select", SwitcherPre),
            greeter: export!("greeting", GreeterPre),
            texter: export!("sms", TexterPre),
            connector: export!("connect", ConnectorPre),
            gatherer: export!("gather", GathererPre),
            weight: weight_of(component),
            slow_reset: Arc::default(),
        };
        if !CALLED_EXPORTS.iter().any(|name| has(name)) {
            return Err(SandboxError::invalid(format!(
                "the component exports none of {CALLED_EXPORTS:?} (the worlds of package \
                 passthru:plugin); it exports {exports:?}"
            )));
        }
        Ok(plugin)
    }
}

/// How many call slots of the pool one instance of `component` takes: its memories and tables
/// against what a slot sets aside for them ([`TYPICAL_MEMORIES`], [`TYPICAL_TABLES`]), at least
/// one. Admission counts calls by weight, so components that hold many memories or tables cannot
/// empty the pool with fewer calls than it has slots. A component whose needs cannot be known
/// (one that instantiates an imported module, which the host never provides) weighs the most a
/// component may.
pub(super) fn weight_of(component: &Component) -> u32 {
    let (memories, tables) = match component.resources_required() {
        Some(needs) => (needs.num_memories, needs.num_tables),
        None => (MAX_MEMORIES_PER_COMPONENT, MAX_TABLES_PER_COMPONENT),
    };
    memories
        .div_ceil(TYPICAL_MEMORIES)
        .max(tables.div_ceil(TYPICAL_TABLES))
        .max(1)
}

/// The exports the host calls: a plugin has at least one.
pub const CALLED_EXPORTS: [&str; 8] = [
    "decide",
    "decide-lean",
    "record",
    "select",
    "greeting",
    "sms",
    "connect",
    "gather",
];

/// Whether a component with `exports` serves a flow that calls `export`: `decide-lean` (0.1.4)
/// serves where `decide` is called.
pub fn serves(exports: &[String], export: &str) -> bool {
    let has = |name: &str| exports.iter().any(|e| e == name);
    has(export) || (export == "decide" && has("decide-lean"))
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
        .total_core_instances(slots.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
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
            "this is a core WebAssembly module, not a component: build for wasm32-wasip2, link \
             with wasm-component-ld (wasm32-unknown-unknown), or turn the module into a \
             component with `wasm-tools component new`",
        ));
    }
    if bytes[6..8] != COMPONENT_LAYER {
        return Err(SandboxError::invalid(
            "not a WebAssembly binary format this host reads (unknown version or layer)",
        ));
    }
    Ok(())
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

    /// A component's weight is its memories and tables against a slot's: here eight instances
    /// of a module with one memory and one table take four slots.
    #[test]
    fn a_component_with_many_memories_weighs_several_slots() {
        let engine = Engine::new(&engine_config(SandboxOptions {
            max_concurrent_calls: 4,
            ..SandboxOptions::default()
        }))
        .unwrap();
        let instances: String = (0..8)
            .map(|i| format!("(core instance $i{i} (instantiate $m))"))
            .collect();
        let heavy =
            format!("(component (core module $m (memory 1) (table 1 funcref)) {instances})");
        let light = "(component (core module $m (memory 1)) (core instance (instantiate $m)))";
        let weight = |wat: &str| {
            let component = Component::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
            weight_of(&component)
        };
        assert_eq!(weight(&heavy), 4, "8 memories at 2 a slot");
        assert_eq!(weight(light), 1);
        assert_eq!(weight("(component)"), 1, "at least one slot");
    }
}
