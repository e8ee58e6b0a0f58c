//! passthru: runs tenants' WebAssembly plugins to decide, per Exotel Passthru request, which
//! branch a live call takes.

pub mod allocator;
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
