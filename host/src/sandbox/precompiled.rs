//! Compiled artifacts: compile once, keep the machine code on disk, load it at the next start
//! without Cranelift.
//!
//! Loading an artifact is the host's one `unsafe` operation: wasmtime trusts the bytes to be
//! machine code it produced. The registry only hands over bytes this host serialised itself (in
//! this process, or in its compile worker, a child process running this same program), whose
//! SHA-256 matches the checksum recorded when they were written or received; wasmtime itself refuses an
//! artifact from another version or configuration. A mismatch is an error, and the caller then
//! compiles again from the component.

use std::hash::Hasher;

use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{Plugin, Sandbox, SandboxError};

/// A freshly compiled plugin, with what the registry keeps of it.
pub struct Compiled {
    pub plugin: Plugin,
    /// The serialised machine code, for the artifact cache.
    pub artifact: Vec<u8>,
    /// The component's export names (`decide`, `record`, and e.g. `init` from componentize-py).
    pub exports: Vec<String>,
}

impl Sandbox {
    /// Validates and compiles a component, and serialises the result for the artifact cache.
    ///
    /// # Errors
    /// As [`Sandbox::compile`].
    pub fn compile_with_artifact(&self, bytes: &[u8]) -> Result<Compiled, SandboxError> {
        let component = self.compile_component(bytes)?;
        let plugin = self.prepare(&component)?;
        let exports = super::engine::export_names(&self.engine, &component);
        let artifact = component.serialize().map_err(|e| {
            super::error::host_failure("cannot serialise the compiled component", &e)
        })?;
        Ok(Compiled {
            plugin,
            artifact,
            exports,
        })
    }

    /// Loads a plugin from an artifact made by [`Sandbox::compile_with_artifact`].
    ///
    /// `checksum` is the SHA-256 (hex) recorded when the artifact was written.
    ///
    /// # Errors
    /// [`SandboxError::InvalidComponent`] when the bytes do not match the checksum or wasmtime
    /// refuses them (another version or configuration): compile the component again.
    pub fn load_artifact(&self, artifact: &[u8], checksum: &str) -> Result<Plugin, SandboxError> {
        let component = self.deserialize(artifact, checksum).map_err(|message| {
            SandboxError::InvalidComponent {
                message: format!("the cached artifact {message}"),
            }
        })?;
        self.prepare(&component)
    }

    /// Loads what the compile worker (`passthru compile-worker`, a child process of this server)
    /// made of a freshly uploaded component, and links it as [`Sandbox::compile_with_artifact`]
    /// would: the same [`Compiled`], counted as a compile.
    ///
    /// `checksum` is the SHA-256 (hex) the parent computed on receiving the bytes.
    ///
    /// # Errors
    /// [`SandboxError::Host`] when wasmtime refuses the bytes (the worker's engine is not this
    /// one's); [`SandboxError::InvalidComponent`] when the component does not link against the
    /// host or exports neither `decide` nor `record`.
    pub fn load_compiled(
        &self,
        artifact: Vec<u8>,
        checksum: &str,
    ) -> Result<Compiled, SandboxError> {
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let component =
            self.deserialize(&artifact, checksum)
                .map_err(|message| SandboxError::Host {
                    message: format!("the compile worker's artifact {message}"),
                })?;
        let plugin = self.prepare(&component)?;
        let exports = super::engine::export_names(&self.engine, &component);
        Ok(Compiled {
            plugin,
            artifact,
            exports,
        })
    }

    /// Checks `artifact` against `checksum` and hands it to wasmtime; an error says what is
    /// wrong with it, to follow "the ... artifact".
    fn deserialize(&self, artifact: &[u8], checksum: &str) -> Result<Component, String> {
        if hex_sha256(artifact) != checksum {
            return Err("does not match its checksum".into());
        }
        #[allow(unsafe_code)]
        // SAFETY: `artifact` was produced by `Component::serialize` of this host's code, with
        // the engine settings of `codegen_config`: either in this process (the registry writes
        // an artifact, with its checksum, only from what `compile_with_artifact` or
        // `load_compiled` returned), or by the compile worker, this same program run as a
        // child process, whose stdout reaches the parent over a pipe only the two of them hold
        // (the parent then computes the checksum on receipt). Its bytes are unchanged since
        // (the SHA-256 above). wasmtime checks the version and engine settings.
        let component = unsafe { Component::deserialize(&self.engine, artifact) }
            .map_err(|e| format!("cannot be loaded: {e}"))?;
        Ok(component)
    }

    /// Identifies the engine's code generation: artifacts are valid only for the same key.
    pub fn compatibility_key(&self) -> String {
        engine_key(&self.engine)
    }
}

/// The compatibility key of `engine`'s code generation, 32 hex digits.
pub(super) fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex(&hasher.0.finalize()[..16])
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Feeds `Hash` output into SHA-256, so the key is stable across runs and Rust versions.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Only the SHA-256 digest is used; `finish` exists to satisfy the trait.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
