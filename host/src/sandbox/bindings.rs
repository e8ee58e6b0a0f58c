//! The Rust types and traits generated from `wit/`: the one place `bindgen!` runs.
//!
//! Exports are async so that a guest in a loop yields to the executor (fuel yield interval) and a
//! stalled call can be abandoned at its deadline; the host imports are cheap and synchronous.
//!
//! A plugin exports `decide`, `record` or both, or one of the hooks of 0.1.2 (`select`,
//! `greeting`, `sms`, `connect`, `gather`), so each export gets its own world's bindings
//! (`decider` here, the others below) and a plugin is prepared for each export it has. They all
//! share one set of `types` and `host` definitions, and the host imports are linked once.
//! `lean-decider` (0.1.4) adds the `call` interface, linked once too.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "decider",
    exports: { default: async },
    // The host imports charge their work to the call, and trap when it is spent.
    imports: { default: trappable },
});

/// One export's world, over the `types` and `host` generated above.
macro_rules! world {
    ($module:ident, $world:literal) => {
        #[doc = concat!("The `", $world, "` world's bindings.")]
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../wit",
                world: $world,
                exports: { default: async },
                imports: { default: trappable },
                with: {
                    "passthru:plugin/types": super::passthru::plugin::types,
                    "passthru:plugin/host": super::passthru::plugin::host,
                    "passthru:plugin/kv": super::passthru::plugin::kv,
                },
            });
        }
    };
}

world!(recorder, "recorder");
world!(switcher, "switcher");
world!(greeter, "greeter");
world!(texter, "texter");
world!(connector, "connector");
world!(gatherer, "gatherer");
// Since 0.1.4: `decide-lean`, and the `call` interface it reads the call through (generated here,
// in `lean_decider::passthru::plugin::call`).
world!(lean_decider, "lean-decider");
