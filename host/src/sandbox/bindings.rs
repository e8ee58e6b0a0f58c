//! The Rust types and traits generated from `wit/`: the one place `bindgen!` runs.
//!
//! Exports are async so that a guest in a loop yields to the executor (fuel yield interval) and a
//! stalled call can be abandoned at its deadline; the host imports are cheap and synchronous.
//!
//! A plugin exports `decide`, `record` or both, so each export gets its own world's bindings
//! (`decider` here, `recorder` below) and a plugin is prepared for each export it has. The two
//! share one set of `types` and `host` definitions, and the host imports are linked once.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "decider",
    exports: { default: async },
    // The host imports charge their work to the call, and trap when it is spent.
    imports: { default: trappable },
});

/// The `recorder` world's bindings, over the `types` and `host` generated above.
pub mod recorder {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "recorder",
        exports: { default: async },
        imports: { default: trappable },
        with: {
            "passthru:plugin/types": super::passthru::plugin::types,
            "passthru:plugin/host": super::passthru::plugin::host,
        },
    });
}
