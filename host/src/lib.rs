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
/// a few dozen small objects on one thread (the call's details, the store, the record) and a few
/// large ones (the store's and the instance's own structures); glibc's malloc merges its free
/// lists on each large request, and mimalloc's per-thread pages do not. Measured on the sandbox
/// call, 10.1 – 10.3 µs against 10.9 – 11.0 µs (BENCHMARKS.md, issue 14, round 3).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
