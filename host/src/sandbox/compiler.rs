//! Compiling without running: the engine of the compile worker (`passthru compile-worker`, a
//! child process with a memory limit), which turns a component into the serialised machine code
//! the server's [`Sandbox`](super::Sandbox) loads.
//!
//! It has the server's code generation settings ([`codegen_config`]) but not its instance pool:
//! the pool reserves gigabytes of address space up front, which a child under `RLIMIT_AS` could
//! not, and the pool does not change the code. [`Compiler::compatibility_key`] is the same as
//! [`Sandbox::compatibility_key`](super::Sandbox::compatibility_key) for the same build.

use wasmtime::component::Component;
use wasmtime::{Engine, OutOfMemory};

use super::SandboxError;
use super::engine::{check_header, codegen_config};
use super::precompiled::engine_key;

/// Why a component was not compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompilerError {
    /// Not a component, or one wasmtime refuses: the uploader's problem.
    #[error(transparent)]
    Invalid(#[from] SandboxError),
    /// The compiler could not get the memory it asked for.
    #[error("the compiler ran out of memory: {0}")]
    OutOfMemory(String),
    /// The engine could not be built, or its output not serialised.
    #[error("{0}")]
    Host(String),
}

/// An engine that only compiles.
pub struct Compiler {
    engine: Engine,
}

impl Compiler {
    /// Builds the engine.
    ///
    /// # Errors
    /// [`CompilerError::Host`] when wasmtime refuses the configuration.
    pub fn new() -> Result<Self, CompilerError> {
        Engine::new(&codegen_config())
            .map(|engine| Self { engine })
            .map_err(|e| CompilerError::Host(format!("cannot build the compile engine: {e}")))
    }

    /// Identifies the engine's code generation (see `Sandbox::compatibility_key`).
    pub fn compatibility_key(&self) -> String {
        engine_key(&self.engine)
    }

    /// Checks the header, validates and compiles `bytes`, and serialises the machine code.
    ///
    /// # Errors
    /// Not a component or not one wasmtime accepts ([`CompilerError::Invalid`]); the memory ran
    /// out ([`CompilerError::OutOfMemory`]); the result cannot be serialised.
    pub fn compile(&self, bytes: &[u8]) -> Result<Vec<u8>, CompilerError> {
        check_header(bytes)?;
        let component = Component::from_binary(&self.engine, bytes).map_err(|e| {
            if out_of_memory(&e) {
                return CompilerError::OutOfMemory(format!("{e:#}"));
            }
            SandboxError::invalid(format!("the component does not compile: {e}")).into()
        })?;
        component.serialize().map_err(|e| match out_of_memory(&e) {
            true => CompilerError::OutOfMemory(format!("{e:#}")),
            false => CompilerError::Host(format!("cannot serialise the compiled component: {e}")),
        })
    }
}

/// Whether wasmtime failed for want of memory (its own `OutOfMemory`, or an `mmap` refused
/// with `ENOMEM`, which is how `RLIMIT_AS` shows) rather than because of the component.
fn out_of_memory(error: &wasmtime::Error) -> bool {
    error.is::<OutOfMemory>()
        || error.chain().any(|cause| {
            cause.is::<OutOfMemory>()
                || cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.raw_os_error() == Some(libc::ENOMEM))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Sandbox, SandboxOptions, hex_sha256};

    /// The worker's engine has no pool; its artifacts must still be the server's own.
    #[test]
    fn the_compile_engine_makes_the_code_the_server_engine_loads() {
        let compiler = Compiler::new().expect("compile engine");
        let sandbox = Sandbox::new(SandboxOptions {
            max_concurrent_calls: 2,
            ..SandboxOptions::default()
        })
        .expect("sandbox");
        assert_eq!(compiler.compatibility_key(), sandbox.compatibility_key());

        let component = crate::registry::builtin("ivr-menu").expect("built-in plugin");
        let artifact = compiler.compile(component).expect("compiles");
        let compiled = sandbox
            .load_compiled(artifact.clone(), &hex_sha256(&artifact))
            .expect("the server loads the worker's artifact");
        assert!(compiled.plugin.can_decide());
        assert!(crate::sandbox::serves(&compiled.exports, "decide"));
    }

    #[test]
    fn a_core_module_is_refused_before_any_compile() {
        let compiler = Compiler::new().expect("compile engine");
        let module = wat::parse_str("(module)").expect("wat");
        let error = compiler.compile(&module).expect_err("a core module");
        assert!(matches!(error, CompilerError::Invalid(_)), "{error:?}");
    }
}
