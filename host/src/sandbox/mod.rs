//! The sandbox: one wasmtime `Engine` per process, a compiled [`Plugin`] per component, and a
//! fresh `Store` per call with a fuel budget, a wall-clock deadline and a memory cap.
//!
//! Link once per engine (WASI with no capability, and the host imports of `wit/`), prepare once
//! per plugin (`InstancePre` with its exports already looked up), and per call only create a
//! `Store`, instantiate from the pool and call `decide` (sync flows) or `record` (async flows).
//! Failures are typed ([`SandboxError`]), classified from wasmtime's `Trap` codes and the
//! limiter's own record, never from messages.
//!
//! - `admission`: a tenant's share of the pool, and the memory budget of the calls in flight;
//! - `limits`: what a flow allows one call ([`Limits`]) and the range the host accepts;
//! - `error`: the failure kinds, the errors and their classification;
//! - `engine`: the engine and its pool, compiling plugins, the counters;
//! - `ticker`: the thread that advances epochs for deadlines while calls run;
//! - `compiler`: the compile worker's engine, the same code generation without the pool;
//! - `calls`: `decide` and `record`, and what a call reports;
//! - `hooks`: the exports of Exotel's other URL hooks (`select`, `greeting`, `sms`, `connect`,
//!   `gather`), and their answers checked;
//! - `meter`: the bounds on what a call's imports do, and their cost charged to its fuel;
//! - `state`, `output`, `last_words`, `convert`, `bindings`, `precompiled`: a call's store data,
//!   its log, a trapped guest's last words, the WIT types and conversions to them, and the
//!   compiled-artifact cache.

mod admission;
mod bindings;
mod calls;
mod compiler;
mod convert;
mod engine;
mod error;
mod hooks;
mod last_words;
mod lean;
mod limits;
mod meter;
pub mod outbound;
mod output;
mod precompiled;
mod scratch;
mod seed;
mod state;
mod ticker;

pub use admission::{TenantShare, default_memory_budget_mb};
pub use calls::{Branch, CallReport, Decision, Event, MAX_REASON_BYTES, RecordReport, Report};
pub use compiler::{Compiler, CompilerError};
pub use engine::{CALLED_EXPORTS, Plugin, Sandbox, SandboxOptions, check_header, serves};
pub use error::{FailureKind, SandboxError};
pub use hooks::{Answered, HookAnswer, HookExport, HookReport};
pub use last_words::MAX_LAST_WORDS_BYTES;
pub use limits::{
    DEFAULT_DEADLINE_MS, DEFAULT_FUEL, DEFAULT_MEMORY_MB, Limits, MAX_DEADLINE_MS, MAX_MEMORY_MB,
};
pub use meter::{
    FUEL_PER_HOST_BYTE, MAX_HOSTCALL_BYTES, MAX_RANDOM_BYTES, MAX_RESOURCES, STREAM_PERMIT_BYTES,
};
pub use output::{LogLevel, LogLine, MAX_LOG_BYTES, MAX_LOG_LINES, trace_lines};
pub use precompiled::{Compiled, hex_sha256};
pub use scratch::MAX_SCRATCH_BYTES;
pub use seed::CallSeed;
pub use state::{FlowConfig, Grants, MAX_KV_WRITES_PER_CALL, MemoryUse};
