//! The upload validator: the bytes of `POST /v1/plugins/{plugin}/versions` go through
//! `Sandbox::compile` (header check, wasmtime's parse and validation, the compile of whatever is
//! valid, and the link check against the host's imports and the plugin worlds). Any input must
//! end in a plugin or an error, never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use passthru::sandbox::{Sandbox, SandboxOptions};

/// One engine for the run, as the server has: building one per input would measure mmap.
static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
    Sandbox::new(SandboxOptions {
        max_concurrent_calls: 1,
        ..SandboxOptions::default()
    })
    .expect("sandbox")
});

fuzz_target!(|data: &[u8]| {
    let _ = SANDBOX.compile(data);
});
