//! The Rust types and traits generated from `wit/`: the one place `bindgen!` runs.
//!
//! Exports are async so that a guest in a loop yields to the executor (fuel yield interval) and a
//! stalled call can be abandoned at its deadline; the host imports are cheap and synchronous.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "decider",
    exports: { default: async },
});
