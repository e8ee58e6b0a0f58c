//! The compile worker: `passthru compile-worker`, a hidden subcommand the server runs as a child
//! process for each compile (see `compiles`). wasmtime offers no bound on the memory Cranelift
//! allocates while compiling, and a hostile component can make it allocate gigabytes; in a child
//! process, the kernel bounds it (`RLIMIT_AS`), and the server kills the child when its time
//! budget runs out.
//!
//! The child limits itself before it reads anything, then reads the component from stdin,
//! compiles it in the idle scheduling class, and writes to stdout its engine's compatibility key
//! (one line) and the serialised machine code. A failure is a short message on stderr and an
//! exit code of [`exit`].

use std::io::{Read, Write};

use crate::records::yield_to_requests;
use crate::sandbox::{Compiler, CompilerError, SandboxError};

/// The name of the hidden subcommand.
pub const SUBCOMMAND: &str = "compile-worker";

/// How the worker ends, beyond success (0). A child that ends another way (a signal: Rust aborts
/// when an allocation fails, which is how most allocations past `RLIMIT_AS` end) is judged by the
/// parent.
pub mod exit {
    /// The component is invalid; stderr says why.
    pub const INVALID: i32 = 65;
    /// The host failed (no engine, a pipe closed); stderr says how.
    pub const HOST: i32 = 71;
    /// The compiler asked for more memory than the limit allows.
    pub const OUT_OF_MEMORY: i32 = 75;
}

/// What the parent tells the worker.
#[derive(Debug, Clone, Copy)]
pub struct WorkerArgs {
    /// The address space the worker may use, in MiB.
    pub memory_mb: u64,
    /// Threads Cranelift compiles functions on.
    pub threads: usize,
}

/// Runs the worker; returns its exit code.
pub fn run(args: WorkerArgs) -> i32 {
    // mimalloc reserves address space ahead of use, which the limit below counts: under a small
    // limit the worker would fail in ways that do not read as running out of memory.
    if !crate::allocator::ALLOCATOR.is_system() {
        return fail(
            exit::HOST,
            &format!(
                "the compile worker runs on the C library's malloc: start it with {}={} (the \
                 server does)",
                crate::allocator::ALLOCATOR_ENV,
                crate::allocator::SYSTEM_VALUE
            ),
        );
    }
    if let Err(error) = limit_process(args.memory_mb) {
        return fail(
            exit::HOST,
            &format!("cannot limit the compile's memory: {error}"),
        );
    }
    yield_to_requests();
    idle_compiler_threads(args.threads);
    let mut bytes = Vec::new();
    if let Err(error) = std::io::stdin().lock().read_to_end(&mut bytes) {
        let code = match error.kind() {
            std::io::ErrorKind::OutOfMemory => exit::OUT_OF_MEMORY,
            _ => exit::HOST,
        };
        return fail(code, &format!("cannot read the component: {error}"));
    }
    match Compiler::new().and_then(|c| Ok((c.compatibility_key(), c.compile(&bytes)?))) {
        Ok((key, artifact)) => match write_artifact(&key, &artifact) {
            Ok(()) => 0,
            Err(error) => fail(exit::HOST, &format!("cannot write the artifact: {error}")),
        },
        Err(CompilerError::Invalid(SandboxError::InvalidComponent { message })) => {
            fail(exit::INVALID, &message)
        }
        Err(CompilerError::Invalid(other)) => fail(exit::INVALID, &other.to_string()),
        Err(error @ CompilerError::OutOfMemory(_)) => fail(exit::OUT_OF_MEMORY, &error.to_string()),
        Err(error @ CompilerError::Host(_)) => fail(exit::HOST, &error.to_string()),
    }
}

fn fail(code: i32, message: &str) -> i32 {
    // The parent reads a bounded prefix of stderr; nothing else is written there.
    let _ = writeln!(std::io::stderr().lock(), "{message}");
    code
}

/// The key line, then the machine code.
fn write_artifact(key: &str, artifact: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(key.as_bytes())?;
    out.write_all(b"\n")?;
    out.write_all(artifact)?;
    out.flush()
}

/// Caps the process's address space at `memory_mb` MiB (hard limit too: nothing in the child
/// may raise it again), and turns core dumps off: a compile stopped by the limit aborts, and a
/// core file of up to that size per upload would fill the disk.
fn limit_process(memory_mb: u64) -> std::io::Result<()> {
    let bytes = memory_mb.saturating_mul(1 << 20);
    let memory = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    for (resource, limit) in [(libc::RLIMIT_CORE, &no_core), (libc::RLIMIT_AS, &memory)] {
        #[allow(unsafe_code)]
        // SAFETY: `setrlimit` only reads `limit`, a valid, initialised `rlimit` that outlives the
        // call, and changes only this process's limits.
        let rc = unsafe { libc::setrlimit(resource, limit) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Cranelift compiles a component's functions in parallel on rayon's global pool: `threads` of
/// them, idle-class like the rest of the worker (the class is inherited from the main thread;
/// the start handler makes sure).
fn idle_compiler_threads(threads: usize) {
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("passthru-cranelift-{i}"))
        .start_handler(|_| yield_to_requests())
        .build_global();
    // It fails only if the pool exists already, which it cannot in a fresh process; Cranelift
    // would then use that pool, which is all the worker has anyway.
    let _ = built;
}
