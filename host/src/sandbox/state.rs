//! What one call's `Store` holds: a WASI context with no capability, the memory limiter, the
//! flow's configuration and the call's log; and the host imports of `wit/`, scoped to that flow.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::passthru::plugin::{host, kv, types};
use super::meter::{HostBudget, MAX_FIELDS_BYTES, MAX_RESOURCES};
use super::outbound::{OutboundCall, OutboundHosts, OutboundOptions, OutboundPolicy};
use super::output::{LogLevel, SharedLog};
use super::scratch::KvScratch;
use super::seed::CallSeed;
use crate::kv::{KvError, KvGrants, expiry};
use rand::rngs::StdRng;

/// A flow's configured keys and values, as the plugin reads them through `config`.
pub type FlowConfig = BTreeMap<String, String>;

/// What a flow lets its plugin reach: its config (secrets included), its key-value stores and the
/// hosts it may send requests to. Built once when the flow goes live; its calls share it.
#[derive(Debug, Default)]
pub struct Grants {
    pub config: FlowConfig,
    pub kv: KvGrants,
    /// The values of the flow's secrets (in `config` too): blanked out of the call's log and
    /// error messages, wherever the plugin wrote them.
    pub secrets: Vec<String>,
    /// The hosts `wasi:http` may reach (none: it refuses every request).
    pub outbound_hosts: Option<Arc<OutboundHosts>>,
    /// Key-value writes stay in the call (a dry run's, a backtest's): the plugin reads its own
    /// writes over the stores' data, and nothing is written to the stores.
    pub scratch_kv: bool,
    /// The tenant's name lookups for outbound requests, shared by its flows
    /// (`TenantShare::lookups`); none: only the server's bound applies.
    pub lookups: Option<Arc<tokio::sync::Semaphore>>,
}

impl Grants {
    /// What a dry run of a flow is granted: the same config and stores, key-value writes kept
    /// in the call only, and no outbound request (each is refused, and listed as refused).
    pub fn dry_run(&self) -> Self {
        Self {
            config: self.config.clone(),
            kv: self.kv.clone(),
            secrets: self.secrets.clone(),
            outbound_hosts: None,
            scratch_kv: true,
            lookups: self.lookups.clone(),
        }
    }

    /// A flow that grants its config and nothing else.
    pub fn config(config: FlowConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }
}

/// Key-value writes (`set`, `delete`, `increment`) one call may make; past it they answer
/// `unavailable`. Reads are bounded by the call's fuel alone.
pub const MAX_KV_WRITES_PER_CALL: u32 = 1000;
/// What each key-value call costs the call's host budget, in bytes, besides the bytes it moves:
/// about a map look-up's work.
const KV_CALL_BYTES: usize = 64;

/// Most table elements one call may hold, all tables together (8 bytes each on the host).
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The data of one call's `Store`.
pub struct CallState {
    /// The WASI context and the host's generator, made on the plugin's first use of either
    /// (see [`CallEntropy`]): many plugins decide without a single WASI call.
    entropy: Option<CallEntropy>,
    /// What `entropy` is drawn from.
    seed: CallSeed,
    table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    grants: Arc<Grants>,
    kv_writes: u32,
    pub(crate) log: SharedLog,
    /// The operator's bounds on outbound requests, when the flow lists hosts (its list is in
    /// `grants`).
    outbound: Option<Arc<OutboundOptions>>,
    /// `wasi:http`'s state, made on the plugin's first use of it (most never use it).
    http: Option<(WasiHttpCtx, OutboundCall)>,
    deadline: Instant,
    /// A dry run's key-value writes (see [`Grants::scratch_kv`]).
    scratch: Option<KvScratch>,
    /// The parameters of the call `decide-lean` reads through the `call` interface, each field
    /// read from them when asked (see `lean`); `None` for the exports that take the call as
    /// their argument.
    pub(super) call: Option<crate::call::Params>,
    /// The whole typed call, built from `call` on its first `details` or `legs` read (see `lean`).
    pub(super) typed_call: Option<Box<crate::call::CallDetails>>,
}

impl CallState {
    /// A call's store data without outbound requests (tests).
    #[cfg(test)]
    pub fn new(memory_bytes: usize, grants: Arc<Grants>, fuel: u64, deadline: Instant) -> Self {
        let seed = CallSeed::fresh();
        Self::with_outbound(memory_bytes, grants, None, fuel, deadline, &seed)
    }

    /// A call's store data: `fuel` and `deadline` bound what its imports may do for it too, and
    /// `outbound` the operator's bounds on `wasi:http` requests to the hosts `grants` lists
    /// (none: every request refused).
    pub(crate) fn with_outbound(
        memory_bytes: usize,
        grants: Arc<Grants>,
        outbound: Option<Arc<OutboundOptions>>,
        fuel: u64,
        deadline: Instant,
        seed: &CallSeed,
    ) -> Self {
        let log = SharedLog::new(HostBudget::new(fuel, deadline));
        let scratch = grants.scratch_kv.then(KvScratch::default);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            entropy: None,
            seed: *seed,
            table,
            limiter: CallLimiter::new(memory_bytes),
            grants,
            kv_writes: 0,
            log,
            outbound,
            http: None,
            deadline,
            scratch,
            call: None,
            typed_call: None,
        }
    }

    /// The call's WASI context and the host's generator, made now if the plugin had not used
    /// either yet.
    fn entropy(&mut self) -> &mut CallEntropy {
        self.entropy
            .get_or_insert_with(|| CallEntropy::new(&self.seed, &self.log))
    }

    /// What the host's `get-random-bytes` draws from.
    pub(crate) fn random(&mut self) -> &mut StdRng {
        &mut self.entropy().random
    }
}

/// What a call's WASI imports work on, and the host's own generator: both derived from the call's
/// [`CallSeed`] in one fixed order, so that the call replays whichever the plugin used first.
///
/// Made on first use rather than with the store: building a WASI context seeds several generators
/// and boxes its streams and clocks, about a microsecond, which a plugin that makes no WASI call
/// (a decision from the call's details alone) never needs.
struct CallEntropy {
    wasi: WasiCtx,
    /// What the host's `get-random-bytes` draws from.
    random: StdRng,
}

impl CallEntropy {
    fn new(seed: &CallSeed, log: &SharedLog) -> Self {
        // No preopens, no environment, no arguments, no network: the builder's defaults deny
        // files, env and args; sockets are turned off explicitly rather than left to an
        // address check. What the guest writes is charged to the call (see `meter`). Its clocks
        // and random sources derive from `seed`, so that the call can be replayed.
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(log.stream(LogLevel::Stdout))
            .stderr(log.stream(LogLevel::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let random = seed.apply(&mut builder);
        Self {
            wasi: builder.build(),
            random,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let (ctx, hooks) = self.http.get_or_insert_with(|| {
            let call = match (&self.grants.outbound_hosts, &self.outbound) {
                (Some(hosts), Some(options)) => OutboundPolicy {
                    hosts: hosts.clone(),
                    options: options.clone(),
                    lookups: self.grants.lookups.clone(),
                }
                .for_call(self.deadline, self.log.clone(), self.grants.clone()),
                _ => OutboundCall::closed(self.deadline, self.log.clone(), self.grants.clone()),
            };
            let mut ctx = WasiHttpCtx::new();
            ctx.set_field_size_limit(MAX_FIELDS_BYTES);
            (ctx, call)
        });
        WasiHttpCtxView {
            ctx,
            table: &mut self.table,
            hooks,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let entropy = self
            .entropy
            .get_or_insert_with(|| CallEntropy::new(&self.seed, &self.log));
        WasiCtxView {
            ctx: &mut entropy.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}

impl host::Host for CallState {
    fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            host::Level::Trace => LogLevel::Trace,
            host::Level::Debug => LogLevel::Debug,
            host::Level::Info => LogLevel::Info,
            host::Level::Warn => LogLevel::Warn,
            host::Level::Error => LogLevel::Error,
        };
        let mut log = self.log.lock();
        log.budget.charge(message.len())?;
        log.push(level, &message);
        Ok(())
    }

    fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let value = self.grants.config.get(&key).cloned();
        let bytes = key.len() + value.as_ref().map_or(0, String::len);
        self.log.lock().budget.charge(bytes)?;
        Ok(value)
    }

    fn config_entries(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        let bytes = self
            .grants
            .config
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        self.log.lock().budget.charge(bytes)?;
        Ok(self
            .grants
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl CallState {
    pub(crate) fn grants(&self) -> &Arc<Grants> {
        &self.grants
    }

    /// Charges a key-value call's work to the call, then counts it as a write if it is one.
    fn charge_kv(
        &mut self,
        bytes: usize,
        write: bool,
    ) -> wasmtime::Result<Result<(), kv::KvError>> {
        self.log.lock().budget.charge(KV_CALL_BYTES + bytes)?;
        if write {
            if self.kv_writes >= MAX_KV_WRITES_PER_CALL {
                return Ok(Err(kv::KvError::Unavailable(format!(
                    "a call may make at most {MAX_KV_WRITES_PER_CALL} key-value writes"
                ))));
            }
            self.kv_writes += 1;
        }
        Ok(Ok(()))
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl From<KvError> for kv::KvError {
    fn from(error: KvError) -> Self {
        match error {
            KvError::NoSuchStore(m) => kv::KvError::NoSuchStore(m),
            KvError::Invalid(m) => kv::KvError::Invalid(m),
            KvError::OverCap(m) => kv::KvError::OverCap(m),
            KvError::Unavailable(m) => kv::KvError::Unavailable(m),
        }
    }
}

impl CallState {
    /// A key-value call: its work charged first, then `op` on the store `store` if the flow
    /// grants it.
    fn kv_op<T>(
        &mut self,
        store: &str,
        bytes: usize,
        write: bool,
        op: impl FnOnce(&crate::kv::Bucket, Option<&mut KvScratch>) -> Result<T, KvError>,
    ) -> wasmtime::Result<Result<T, kv::KvError>> {
        if let Err(refused) = self.charge_kv(store.len() + bytes, write)? {
            return Ok(Err(refused));
        }
        let scratch = self.scratch.as_mut();
        Ok(self
            .grants
            .kv
            .open(store)
            .and_then(|bucket| op(bucket, scratch))
            .map_err(Into::into))
    }
}

impl kv::Host for CallState {
    fn get(
        &mut self,
        store: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, kv::KvError>> {
        let found = self.kv_op(&store, key.len(), false, |bucket, scratch| {
            Ok(match scratch {
                Some(scratch) => scratch.get(bucket, &key, now_ms()),
                None => bucket.get(&key, now_ms()).map(|entry| entry.value),
            })
        })?;
        // The value's bytes are work too: copying it into the guest.
        if let Ok(Some(value)) = &found {
            self.log.lock().budget.charge(value.len())?;
        }
        Ok(found)
    }

    fn set(
        &mut self,
        store: String,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), kv::KvError>> {
        let bytes = key.len() + value.len();
        self.kv_op(&store, bytes, true, |bucket, scratch| {
            let expires_at_ms = expiry(now_ms(), ttl_ms)?;
            match scratch {
                Some(scratch) => scratch.put(bucket, &key, value, expires_at_ms),
                None => bucket.put(&key, value, expires_at_ms),
            }
        })
    }

    fn delete(
        &mut self,
        store: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::KvError>> {
        self.kv_op(&store, key.len(), true, |bucket, scratch| match scratch {
            Some(scratch) => scratch.delete(bucket, &key, now_ms()),
            None => bucket.delete(&key, now_ms()),
        })
    }

    fn increment(
        &mut self,
        store: String,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<i64, kv::KvError>> {
        self.kv_op(&store, key.len(), true, |bucket, scratch| {
            let now = now_ms();
            match scratch {
                Some(scratch) => scratch.increment(bucket, &key, delta, expiry(now, ttl_ms)?, now),
                None => bucket.increment(&key, delta, expiry(now, ttl_ms)?, now),
            }
        })
    }
}

/// Which cap a call went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Memory { requested_bytes: usize },
    Table { requested_elements: usize },
}

/// The error a refused growth raises, so that the guest traps at once with a clear cause instead
/// of running its own out-of-memory path.
#[derive(Debug, thiserror::Error)]
#[error("memory cap reached")]
pub struct LimitExceeded;

/// Caps all linear memories of a call together, and all its tables together.
///
/// The pooling allocator reserves address space per memory; this is what bounds the memory a
/// call may actually use. A growth past the cap is recorded and traps the guest.
pub struct CallLimiter {
    memory_cap: usize,
    memory_used: usize,
    /// The memories' bytes once the instance was made (see [`MemoryUse`]).
    memory_at_start: Option<usize>,
    table_used: usize,
    pub(crate) hit: Option<LimitHit>,
}

impl CallLimiter {
    fn new(memory_cap: usize) -> Self {
        Self {
            memory_cap,
            memory_used: 0,
            memory_at_start: None,
            table_used: 0,
            hit: None,
        }
    }

    /// Marks the instance made: growth from here on is the call's own. Every export's path
    /// calls it right after instantiating (a successful call that did not is a bug that
    /// `Sandbox::finish` asserts against in debug builds).
    pub(crate) fn instantiated(&mut self) {
        self.memory_at_start = Some(self.memory_used);
    }

    pub(crate) fn was_instantiated(&self) -> bool {
        self.memory_at_start.is_some()
    }

    /// The call's linear memory: what the instance started with, and what the call added (0
    /// for a call that failed before its instance was made).
    pub(crate) fn memory(&self) -> MemoryUse {
        let start = self.memory_at_start.unwrap_or(self.memory_used);
        let bytes = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        MemoryUse {
            initial_bytes: bytes(start),
            // Memories only grow, so this never saturates; a wasmtime that shrank one would
            // read as no growth rather than fail the call's report.
            grown_bytes: bytes(self.memory_used.saturating_sub(start)),
        }
    }
}

/// A call's linear memory, all memories of the instance together.
///
/// A call that grows its memory costs the server more than its own work: the pool makes the new
/// pages accessible, and before the slot's next instance takes it, inaccessible again, which on
/// a machine with more than one core interrupts the others to flush their address caches (about
/// 30 µs a call on the two-core machine of `BENCHMARKS.md`, "Round 13"; the plugin guide's
/// "Memory" says how to avoid it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MemoryUse {
    /// The bytes the instance's memories had once it was made: what the component declares,
    /// with what its start functions grew, if any.
    pub initial_bytes: u64,
    /// The bytes the call's `memory.grow`s added.
    pub grown_bytes: u64,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            // The memory's own maximum: an ordinary failed `memory.grow`, the guest's business.
            return Ok(false);
        }
        let total = self.memory_used - current.min(self.memory_used) + desired;
        if total > self.memory_cap {
            self.hit = Some(LimitHit::Memory {
                requested_bytes: total,
            });
            return Err(wasmtime::Error::new(LimitExceeded));
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let total = self.table_used - current.min(self.table_used) + desired;
        if total > MAX_TABLE_ELEMENTS {
            self.hit = Some(LimitHit::Table {
                requested_elements: total,
            });
            return Err(wasmtime::Error::new(LimitExceeded));
        }
        self.table_used = total;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cap_counts_every_memory_of_the_call() {
        let mut l = CallLimiter::new(10 << 20);
        // Two memories created at instantiation (current = 0), then one grows.
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        assert!(l.memory_growing(4 << 20, 6 << 20, None).unwrap());
        assert_eq!(l.hit, None);
        assert!(l.memory_growing(6 << 20, 7 << 20, None).is_err());
        assert_eq!(
            l.hit,
            Some(LimitHit::Memory {
                requested_bytes: 11 << 20
            })
        );
    }

    #[test]
    fn a_memory_maximum_is_an_ordinary_failed_grow() {
        let mut l = CallLimiter::new(10 << 20);
        assert!(!l.memory_growing(0, 2 << 20, Some(1 << 20)).unwrap());
        assert_eq!(l.hit, None);
    }

    #[test]
    fn growth_counts_as_the_calls_only_once_the_instance_is_made() {
        let mut l = CallLimiter::new(10 << 20);
        // Instantiation: two memories at their declared sizes.
        assert!(l.memory_growing(0, 128 << 10, None).unwrap());
        assert!(l.memory_growing(0, 64 << 10, None).unwrap());
        assert_eq!(l.memory().grown_bytes, 0);
        l.instantiated();
        assert!(l.memory_growing(128 << 10, 192 << 10, None).unwrap());
        assert!(l.memory_growing(64 << 10, 128 << 10, None).unwrap());
        // A grow past the cap adds nothing either.
        assert!(l.memory_growing(192 << 10, 11 << 20, None).is_err());
        // Nor one past the memory's own maximum.
        assert!(
            !l.memory_growing(128 << 10, 256 << 10, Some(128 << 10))
                .unwrap()
        );
        let memory = l.memory();
        assert_eq!(memory.initial_bytes, 192 << 10);
        assert_eq!(memory.grown_bytes, 128 << 10);
    }

    #[test]
    fn tables_are_capped_too() {
        let mut l = CallLimiter::new(1 << 20);
        assert!(l.table_growing(0, 1000, None).unwrap());
        assert!(l.table_growing(1000, MAX_TABLE_ELEMENTS + 1, None).is_err());
        assert!(matches!(l.hit, Some(LimitHit::Table { .. })));
    }
}
