//! Where components are compiled: a few threads of their own, in Linux's `SCHED_IDLE` class (as
//! are the threads Cranelift compiles functions on in parallel), so that a compile only ever
//! takes CPU time the request path leaves idle.
//!
//! At most `threads` compiles run at once and at most `queue` more wait; past that an upload
//! answers `503`. A compile that has not finished within its time budget is answered `422`; its
//! thread finishes it and throws the result away (Cranelift cannot be interrupted), so the slot
//! stays taken, and the next upload waits, until it ends.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread;
use std::time::Duration;

use crate::records::yield_to_requests;
use crate::sandbox::{Compiled, Sandbox, SandboxError};

/// How compiles are bounded.
#[derive(Debug, Clone, Copy)]
pub struct CompileLimits {
    /// Compiles that run at once.
    pub threads: usize,
    /// Compiles that may wait for one of them.
    pub queue: usize,
    /// The longest one compile may take.
    pub budget: Duration,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            threads: 1,
            queue: 8,
            budget: Duration::from_secs(60),
        }
    }
}

/// Why a component was not compiled, beyond what the sandbox says of it.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Invalid(#[from] SandboxError),
    #[error("the component did not compile within {budget_s} s, the most a compile may take here")]
    OverBudget { budget_s: u64 },
    #[error("{waiting} compiles are waiting already; try again shortly")]
    Busy { waiting: usize },
}

struct Job {
    bytes: Arc<[u8]>,
    answer: SyncSender<Result<Compiled, SandboxError>>,
}

/// The compile threads and their queue.
pub struct Compiles {
    jobs: SyncSender<Job>,
    limits: CompileLimits,
}

impl Compiles {
    /// Starts `limits.threads` compile threads for `sandbox`.
    pub fn start(sandbox: Arc<Sandbox>, limits: CompileLimits) -> Self {
        idle_parallel_compilation();
        let (jobs, rx) = sync_channel::<Job>(limits.queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..limits.threads.max(1) {
            let (sandbox, rx) = (sandbox.clone(), rx.clone());
            let spawned = thread::Builder::new()
                .name(format!("passthru-compile-{i}"))
                .spawn(move || compile_loop(&sandbox, &rx));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a compile thread");
            }
        }
        Self { jobs, limits }
    }

    /// Compiles `bytes` on a compile thread, waiting at most the time budget for it. Blocking:
    /// call it off the async runtime.
    ///
    /// # Errors
    /// The component is invalid, took longer than the budget, or the queue is full.
    pub fn compile(&self, bytes: Arc<[u8]>) -> Result<Compiled, CompileError> {
        let (answer, result) = sync_channel(1);
        match self.jobs.try_send(Job { bytes, answer }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(CompileError::Busy {
                    waiting: self.limits.queue,
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(SandboxError::Host {
                    message: "no compile thread is running".into(),
                }
                .into());
            }
        }
        // The budget counts from the upload's arrival here: waiting for a thread is part of it.
        match result.recv_timeout(self.limits.budget) {
            Ok(compiled) => Ok(compiled?),
            Err(_) => Err(CompileError::OverBudget {
                budget_s: self.limits.budget.as_secs(),
            }),
        }
    }
}

fn compile_loop(sandbox: &Sandbox, jobs: &Mutex<Receiver<Job>>) {
    yield_to_requests();
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(PoisonError::into_inner);
            jobs.recv()
        };
        let Ok(job) = job else { return };
        // The uploader may have given up (over budget); the answer then goes nowhere.
        let _ = job.answer.send(sandbox.compile_with_artifact(&job.bytes));
    }
}

/// Cranelift compiles a component's functions in parallel on rayon's global pool: make its
/// threads idle-class too. Once per process; if the pool already exists, it is left as it is.
fn idle_parallel_compilation() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let built = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("passthru-cranelift-{i}"))
            .start_handler(|_| yield_to_requests())
            .build_global();
        if let Err(error) = built {
            tracing::warn!(%error, "compiles may compete with requests for the CPU");
        }
    });
}
