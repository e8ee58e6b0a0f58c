//! passthru: runs tenants' WebAssembly plugins to decide, per Exotel Passthru request, which
//! branch a live call takes.

pub mod api;
pub mod call;
pub mod config;
pub mod registry;
pub mod runner;
pub mod sandbox;
