//! Where components are compiled: each in a child process of its own, the compile worker (this
//! same program run as `passthru compile-worker`, see `worker`), because wasmtime offers no bound
//! on the memory Cranelift allocates, nor a way to interrupt it. The child caps its address space
//! (`RLIMIT_AS`, `max_compile_memory_mb`) and runs in Linux's `SCHED_IDLE` class, as do the
//! threads Cranelift compiles functions on, so a compile only ever takes CPU time the request
//! path leaves idle and never more memory than its budget.
//!
//! At most `threads` compiles run at once and at most `queue` more wait; past that an upload
//! answers `503`. A compile that has not finished within its time budget is answered `422` and
//! its child killed, so its slot frees at once for the next upload. A child that runs out of its
//! memory is answered `422` too. What the child writes back is read up to the size of its memory
//! budget (it cannot have held more), checked against this engine's compatibility key, and
//! loaded as the server loads a cached artifact.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::worker::{self, SUBCOMMAND};
use crate::sandbox::{Compiled, Sandbox, SandboxError, check_header, hex_sha256};

/// The most of a failed worker's stderr kept for its error message and the log.
const MAX_STDERR_BYTES: u64 = 4096;
/// The longest compatibility key line a worker may start its answer with.
const MAX_KEY_BYTES: usize = 128;

/// How compiles are bounded.
#[derive(Debug, Clone, Copy)]
pub struct CompileLimits {
    /// Compiles that run at once.
    pub threads: usize,
    /// Compiles that may wait for one of them.
    pub queue: usize,
    /// The longest one compile may take.
    pub budget: Duration,
    /// The address space one compile may use, in MiB.
    pub memory_mb: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            threads: 1,
            queue: 8,
            budget: Duration::from_secs(60),
            memory_mb: 2048,
        }
    }
}

/// Why a component was not compiled, beyond what the sandbox says of it.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Invalid(#[from] SandboxError),
    #[error(
        "the component did not compile within {budget_ms} ms, the most a compile may take here"
    )]
    OverBudget { budget_ms: u128 },
    #[error(
        "the component needs more than {memory_mb} MiB of memory to compile, the most a compile \
         may use here (its memory budget)"
    )]
    OverMemory { memory_mb: u64 },
    #[error("{waiting} compiles are waiting already; try again shortly")]
    Busy { waiting: usize },
    /// The host's failure, not the component's: the worker could not be run or answered
    /// something this server cannot load.
    #[error("the compile worker failed: {message}")]
    Worker { message: String },
}

/// The program compiles run in, as `PROGRAM compile-worker`.
#[derive(Debug, Clone)]
pub struct CompileWorker {
    program: PathBuf,
}

impl CompileWorker {
    /// This very program. On Linux, `/proc/self/exe`: the running binary even when an upgrade
    /// has replaced its file since, so the worker's engine is always the server's.
    pub fn this_program() -> Self {
        let program = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("passthru"))
        };
        Self { program }
    }

    /// Another program with the same subcommand: the `passthru` binary, for a server embedded
    /// in a test binary.
    pub fn at(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    /// Starts a worker, its stdin, stdout and stderr piped to this process.
    fn spawn(&self, limits: &CompileLimits) -> std::io::Result<Child> {
        Command::new(&self.program)
            .arg(SUBCOMMAND)
            .arg("--memory-mb")
            .arg(limits.memory_mb.to_string())
            .arg("--threads")
            .arg(compiler_threads(limits.threads).to_string())
            // Nothing of the server's environment (its operator token, say) is the worker's
            // business.
            .env_clear()
            // The C library's malloc, not mimalloc (`crate::allocator`): mimalloc reserves address
            // space ahead of use, which counts against the worker's limit without holding
            // anything; under a small limit the worker could not start its compiler threads.
            .env(
                crate::allocator::ALLOCATOR_ENV,
                crate::allocator::SYSTEM_VALUE,
            )
            // One malloc arena: each further one reserves 64 MiB of address space up front, for
            // the same reason.
            .env("MALLOC_ARENA_MAX", "1")
            // An allocation that fails aborts; a backtrace would only fill the stderr we read.
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }
}

impl Default for CompileWorker {
    fn default() -> Self {
        Self::this_program()
    }
}

/// Cranelift threads per worker: the cores shared among the compiles that may run at once, as
/// when they all shared one pool in this process.
fn compiler_threads(compiles: usize) -> usize {
    let cores = thread::available_parallelism().map_or(1, usize::from);
    (cores / compiles.max(1)).max(1)
}

struct Job {
    bytes: Arc<[u8]>,
    /// The upload's arrival plus the budget: past it, the job is dropped or its child killed.
    deadline: Instant,
    answer: SyncSender<Result<Compiled, CompileError>>,
}

/// The compile threads and their queue.
pub struct Compiles {
    jobs: SyncSender<Job>,
    limits: CompileLimits,
    /// Uploads being received or compiled: one for each compile that may run or wait. An upload
    /// holds its whole body in memory (up to the upload limit), so without this bound a tenant
    /// sending many at once would hold that many bodies before the compile queue refused them.
    uploads: Arc<tokio::sync::Semaphore>,
}

impl Compiles {
    /// Starts `limits.threads` compile threads for `sandbox`, each running one `worker` at a
    /// time.
    pub fn start(sandbox: Arc<Sandbox>, limits: CompileLimits, worker: CompileWorker) -> Self {
        let (jobs, rx) = sync_channel::<Job>(limits.queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..limits.threads.max(1) {
            let (sandbox, rx, worker) = (sandbox.clone(), rx.clone(), worker.clone());
            let spawned = thread::Builder::new()
                .name(format!("passthru-compile-{i}"))
                .spawn(move || compile_loop(&sandbox, &worker, &limits, &rx));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a compile thread");
            }
        }
        let uploads = Arc::new(tokio::sync::Semaphore::new(
            limits.threads.max(1) + limits.queue,
        ));
        Self {
            jobs,
            limits,
            uploads,
        }
    }

    /// A place for one upload, to hold from before its body is read until its compile ends.
    ///
    /// # Errors
    /// As many uploads as may compile or wait are already in progress.
    pub fn reserve_upload(&self) -> Result<tokio::sync::OwnedSemaphorePermit, CompileError> {
        self.uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| CompileError::Busy {
                waiting: self.limits.queue,
            })
    }

    /// Compiles `bytes` in a compile worker, waiting at most the time budget for it. Blocking:
    /// call it off the async runtime.
    ///
    /// # Errors
    /// The component is invalid, took longer than the budget or more memory, the queue is full,
    /// or the worker failed.
    pub fn compile(&self, bytes: Arc<[u8]>) -> Result<Compiled, CompileError> {
        // Not worth a process, nor a place in the queue.
        check_header(&bytes)?;
        let (answer, result) = sync_channel(1);
        // The budget counts from the upload's arrival here: waiting for a thread is part of it.
        let deadline = Instant::now() + self.limits.budget;
        match self.jobs.try_send(Job {
            bytes,
            deadline,
            answer,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(CompileError::Busy {
                    waiting: self.limits.queue,
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(CompileError::Worker {
                    message: "no compile thread is running".into(),
                });
            }
        }
        match result.recv_timeout(self.limits.budget) {
            Ok(compiled) => compiled,
            Err(_) => Err(over_budget(&self.limits)),
        }
    }
}

fn over_budget(limits: &CompileLimits) -> CompileError {
    CompileError::OverBudget {
        budget_ms: limits.budget.as_millis(),
    }
}

fn compile_loop(
    sandbox: &Sandbox,
    worker: &CompileWorker,
    limits: &CompileLimits,
    jobs: &Mutex<Receiver<Job>>,
) {
    // This thread stays in the normal class: it only starts its child, waits, and loads what
    // the child made (milliseconds); in the idle class, on a busy machine, it could take long to
    // pick up the next job, which would then count as waiting and fill the queue.
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(PoisonError::into_inner);
            jobs.recv()
        };
        let Ok(job) = job else { return };
        let result = match Instant::now() < job.deadline {
            true => compile_in_child(sandbox, worker, limits, &job),
            false => Err(over_budget(limits)),
        };
        // The uploader may have given up (over budget); the answer then goes nowhere.
        let _ = job.answer.send(result);
    }
}

/// Runs one worker for `job` and loads its artifact.
fn compile_in_child(
    sandbox: &Sandbox,
    worker: &CompileWorker,
    limits: &CompileLimits,
    job: &Job,
) -> Result<Compiled, CompileError> {
    let started = Instant::now();
    let child = worker.spawn(limits).map_err(|e| CompileError::Worker {
        message: format!("cannot start it: {e}"),
    })?;
    let cap = usize::try_from(limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let exit = supervise(child, job.bytes.clone(), job.deadline, cap)
        .map_err(|failure| failure.into_error(limits))?;
    let compiled_in = started.elapsed();
    let artifact = judge(exit, limits)?;
    let artifact = strip_key(artifact, &sandbox.compatibility_key())?;
    let checksum = hex_sha256(&artifact);
    let compiled = sandbox
        .load_compiled(artifact, &checksum)
        .map_err(|e| match e {
            SandboxError::Host { message } => CompileError::Worker { message },
            invalid => CompileError::Invalid(invalid),
        })?;
    tracing::debug!(
        compile_ms = compiled_in.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        artifact_bytes = compiled.artifact.len(),
        "compiled in a compile worker"
    );
    Ok(compiled)
}

/// How a worker ended, once it did.
struct Exit {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// Why a worker was stopped before it ended.
enum Stopped {
    Deadline,
    TooMuchOutput { cap: usize },
    Io(String),
}

impl Stopped {
    fn into_error(self, limits: &CompileLimits) -> CompileError {
        let message = match self {
            Stopped::Deadline => return over_budget(limits),
            Stopped::TooMuchOutput { cap } => format!("it wrote more than {cap} bytes"),
            Stopped::Io(message) => message,
        };
        CompileError::Worker { message }
    }
}

/// Feeds `input` to the child and collects what it writes, killing it at `deadline` or when its
/// stdout passes `cap` bytes. Two helper threads do the piping, so that this one can time out.
fn supervise(
    mut child: Child,
    input: Arc<[u8]>,
    deadline: Instant,
    cap: usize,
) -> Result<Exit, Stopped> {
    let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (Some(mut stdin), Some(stdout), Some(stderr)) = pipes else {
        kill(&mut child);
        return Err(Stopped::Io("its pipes were not set up".into()));
    };
    let (done, output) = sync_channel(1);
    let io = thread::Builder::new()
        .name("passthru-compile-io".into())
        .spawn(move || {
            // A worker that died early closes its end: the write fails, the read ends at once.
            let _ = stdin.write_all(&input);
            drop(stdin);
            let _ = done.send(read_bounded(stdout, cap));
        });
    let errors = thread::Builder::new()
        .name("passthru-compile-err".into())
        .spawn(move || read_stderr(stderr));
    let (Ok(_), Ok(errors)) = (io, errors) else {
        kill(&mut child);
        return Err(Stopped::Io(
            "cannot start the threads that pipe to it".into(),
        ));
    };
    let stdout = match output.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(stdout)) if stdout.len() <= cap => stdout,
        Ok(Ok(_)) => {
            kill(&mut child);
            return Err(Stopped::TooMuchOutput { cap });
        }
        Ok(Err(error)) => {
            kill(&mut child);
            return Err(Stopped::Io(format!("cannot read its answer: {error}")));
        }
        Err(RecvTimeoutError::Timeout) => {
            kill(&mut child);
            return Err(Stopped::Deadline);
        }
        Err(RecvTimeoutError::Disconnected) => {
            kill(&mut child);
            return Err(Stopped::Io("the thread reading its answer failed".into()));
        }
    };
    // Its stdout is closed: it is exiting.
    let status = child
        .wait()
        .map_err(|e| Stopped::Io(format!("cannot wait for it: {e}")))?;
    let stderr = errors.join().unwrap_or_default();
    Ok(Exit {
        status,
        stdout,
        stderr,
    })
}

/// Reads `stdout` to its end, but never more than `cap` + 1 bytes (one more tells it went over).
fn read_bounded(stdout: impl Read, cap: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    stdout.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// The first [`MAX_STDERR_BYTES`] of stderr; the rest is read and dropped, so the child never
/// blocks on a full pipe.
fn read_stderr(stderr: impl Read) -> String {
    let mut kept = Vec::new();
    let mut stderr = stderr;
    let _ = (&mut stderr).take(MAX_STDERR_BYTES).read_to_end(&mut kept);
    let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    String::from_utf8_lossy(&kept).trim().to_owned()
}

/// Kills the child and reaps it, so that neither it nor its zombie outlives the compile.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The artifact of a worker that succeeded; else why it did not.
fn judge(exit: Exit, limits: &CompileLimits) -> Result<Vec<u8>, CompileError> {
    if exit.status.success() {
        return Ok(exit.stdout);
    }
    if exit.status.code() == Some(worker::exit::INVALID) {
        return Err(SandboxError::InvalidComponent {
            message: exit.stderr,
        }
        .into());
    }
    if ran_out_of_memory(exit.status, &exit.stderr) {
        tracing::debug!(status = %exit.status, stderr = %exit.stderr, "a compile ran out of memory");
        return Err(CompileError::OverMemory {
            memory_mb: limits.memory_mb,
        });
    }
    Err(CompileError::Worker {
        message: format!("{} ({})", exit.stderr, exit.status),
    })
}

/// Whether a failed worker was stopped by its memory limit: it said so itself, it was killed
/// by a signal (an allocation Rust cannot make aborts; a stack that cannot grow faults; the
/// kernel's OOM killer kills), or it panicked for want of memory.
fn ran_out_of_memory(status: ExitStatus, stderr: &str) -> bool {
    status.code() == Some(worker::exit::OUT_OF_MEMORY)
        || status.signal().is_some()
        || ["memory allocation of", "os error 12", "out of memory"]
            .iter()
            .any(|sign| stderr.contains(sign))
}

/// Checks the worker's first line, its engine's compatibility key, against `expected` (this
/// server's), and returns the artifact after it. A mismatch means the worker is another build.
fn strip_key(mut stdout: Vec<u8>, expected: &str) -> Result<Vec<u8>, CompileError> {
    let newline = stdout
        .iter()
        .take(MAX_KEY_BYTES)
        .position(|b| *b == b'\n')
        .ok_or_else(|| CompileError::Worker {
            message: "its answer does not start with its engine's key".into(),
        })?;
    if &stdout[..newline] != expected.as_bytes() {
        return Err(CompileError::Worker {
            message: format!(
                "its engine ({}) is not this server's ({expected}): is it the same build?",
                String::from_utf8_lossy(&stdout[..newline])
            ),
        });
    }
    stdout.drain(..=newline);
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_from_another_engine_is_the_hosts_failure() {
        let error = strip_key(b"abc\n\x7fELF".to_vec(), "def").expect_err("another key");
        assert!(matches!(error, CompileError::Worker { .. }), "{error:?}");
        let artifact = strip_key(b"def\n\x7fELF".to_vec(), "def").expect("same key");
        assert_eq!(artifact, b"\x7fELF");
        assert!(strip_key(b"no key line".to_vec(), "def").is_err());
    }

    #[test]
    fn a_worker_killed_by_a_signal_ran_out_of_memory() {
        let aborted = ExitStatus::from_raw(libc::SIGABRT);
        assert!(ran_out_of_memory(aborted, ""));
        let said_so = ExitStatus::from_raw(worker::exit::OUT_OF_MEMORY << 8);
        assert!(ran_out_of_memory(said_so, ""));
        let host = ExitStatus::from_raw(worker::exit::HOST << 8);
        assert!(!ran_out_of_memory(host, "cannot read the component"));
    }

    #[test]
    fn an_answer_longer_than_the_cap_is_read_one_byte_past_it_and_no_further() {
        let endless = std::io::repeat(7);
        assert_eq!(read_bounded(endless, 1000).expect("reads").len(), 1001);
        let short = read_bounded(&b"artifact"[..], 1000).expect("reads");
        assert_eq!(short, b"artifact");
    }

    #[test]
    fn the_cores_are_shared_among_the_compiles() {
        assert!(compiler_threads(1) >= 1);
        assert_eq!(compiler_threads(usize::MAX), 1);
        assert_eq!(compiler_threads(0), compiler_threads(1));
    }
}
