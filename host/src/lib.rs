//! passthru: runs tenants' WebAssembly plugins to decide, per Exotel Passthru request, which
//! branch a live call takes.

pub mod answer;
pub mod api;
pub mod auth;
pub mod call;
pub mod config;
pub mod error;
pub mod flow;
pub mod kv;
pub mod logsafe;
pub mod metrics;
pub mod queue;
pub mod records;
pub mod registry;
pub mod rollout;
pub mod runner;
pub mod sandbox;
pub mod secrets;
pub mod server;
pub mod store;

/// mimalloc rather than the system's allocator, for the server and for everything that links
/// this library (its tests and benches measure what the server runs). A call allocates and frees
/// a few dozen small objects (the call's details, the store, the record, which the writer thread
/// frees) and a few large ones (the store's and the instance's own structures); glibc's malloc
/// merges its fast free lists whenever a large block is asked for, and mimalloc does not. Measured
/// with records off, alternating builds: 36.1 – 36.8 µs of server CPU a request against 37.8 –
/// 39.4 µs with glibc (BENCHMARKS.md, issue 14, round 3).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
