//! Async flows: a durable queue, a pool of workers, retries with backoff, dead letters.
//!
//! A request for an async flow is answered only once it is committed to the queue's own SQLite
//! file with `synchronous = FULL`. Commits are grouped: one writer thread takes every request
//! waiting at that moment into one transaction, so a single fsync acknowledges them all, and
//! throughput grows with the number of concurrent requests instead of being capped by the disk's
//! sync rate. After the commit the events go to the in-memory [`scheduler`], which hands them to
//! the workers fairly between tenants; each attempt's outcome goes back through the same writer
//! (handled events are deleted, failed ones get their next attempt time or become dead letters).
//!
//! Delivery is at least once: an event handled just before a crash, whose deletion was not yet
//! committed, runs again at the next start. Plugins get the event's id to be idempotent. An
//! outcome whose commit the store refused is kept and written again once it takes commits, so a
//! passing failure of the store leaves no handled event behind in it until the next start.

pub mod scheduler;
mod stats;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use crate::store::queue::{
    Completion, DeadLetter, Failure, NewEvent, QueueStore, SqliteQueue, StoredEvent,
};
pub use scheduler::{Bounds, FlowDepth, Full};
pub use stats::{DELAY_BUCKETS_US, DelayHistogram, QueueStats};

use crate::call;
use crate::flow::RetryPolicy;
use crate::logsafe::Escaped;
use crate::records::{Answer, Recorder, Subject, Usage};
use crate::registry::Registry;
use crate::sandbox::{Branch, Event, FailureKind, trace_lines};
use crate::store::{DecisionRecord, StoreError, now_ms};
use scheduler::{Finish, Job, Scheduler};

/// The most messages (requests and outcomes) one commit takes.
const MAX_BATCH: usize = 4096;

/// What the queue is allowed, from the server's `[async]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Attempts that may run at once.
    pub workers: usize,
    pub bounds: Bounds,
    /// The dead letters one flow keeps: past it, the oldest are deleted as new ones come.
    pub max_dead_letters_per_flow: u64,
}

/// Why an async request was not accepted. Both are answered `503`, so that the call flow takes
/// its error path instead of believing the request was kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    #[error("the async queue is full ({0})")]
    Full(String),
    #[error("the async queue cannot take requests: {0}")]
    Unavailable(String),
}

/// The queue and its workers. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn QueueStore>,
    registry: Arc<Registry>,
    shared: Arc<Shared>,
    writer: Mutex<Option<Sender<Message>>>,
    writer_thread: Mutex<Option<thread::JoinHandle<()>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// The task that deletes dead letters past their retention; stopped at shutdown.
    expiry: Mutex<Option<JoinHandle<()>>>,
    /// With a shared queue: the task that renews this node's lease and claims the events of
    /// nodes whose lease ran out; stopped at shutdown.
    leases: Mutex<Option<JoinHandle<()>>>,
}

/// What the writer thread and the workers share with the request path.
struct Shared {
    scheduler: Mutex<Scheduler>,
    /// Wakes idle workers: new events, a new retry time, or shutdown.
    wake: Notify,
    closing: AtomicBool,
    stats: QueueStats,
    /// [`QueueOptions::max_dead_letters_per_flow`].
    max_dead_per_flow: u64,
}

impl Shared {
    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        // Held for bookkeeping only, never across an await or I/O.
        self.scheduler.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum Message {
    Accept(NewEvent, Instant, oneshot::Sender<Result<u64, String>>),
    /// An outcome; for a dead letter, its tenant and flow, whose dead letters are then kept
    /// within their bound.
    Complete(Completion, Option<FlowOf>),
}

/// A tenant and one of its flows.
type FlowOf = (Arc<str>, Arc<str>);

impl Queue {
    /// Opens the queue over `store`, resumes every event it holds, and starts the writer thread
    /// and `options.workers` workers on the current runtime.
    ///
    /// # Errors
    /// The store cannot be read, or the writer thread cannot be started.
    pub fn start(
        store: Arc<dyn QueueStore>,
        registry: Arc<Registry>,
        recorder: Recorder,
        options: QueueOptions,
    ) -> Result<Self, StoreError> {
        let mut scheduler = Scheduler::new(options.bounds);
        let now = now_ms();
        // A shared queue resumes nothing here: the lease task's first round, at once and off
        // the runtime's threads, claims what stopped nodes left (this node's own events of an
        // earlier run among them).
        let pending = match store.lease() {
            Some(_) => Vec::new(),
            None => store.pending()?,
        };
        let resumed = pending.len();
        for event in pending {
            let due = event.next_at_ms;
            scheduler.restore(Job::from(event), due, now);
        }
        if resumed > 0 {
            tracing::info!(events = resumed, "resuming the async queue");
        }
        let shared = Arc::new(Shared {
            scheduler: Mutex::new(scheduler),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            stats: QueueStats::default(),
            max_dead_per_flow: options.max_dead_letters_per_flow.max(1),
        });
        let (sender, receiver) = mpsc::channel();
        let writer_thread = {
            let (store, shared) = (store.clone(), shared.clone());
            thread::Builder::new()
                .name("passthru-queue".into())
                .spawn(move || write_loop(store.as_ref(), &shared, &receiver))
                .map_err(|source| StoreError::Thread {
                    what: "queue writer",
                    source,
                })?
        };
        let workers: Vec<JoinHandle<()>> = (0..options.workers.max(1))
            .map(|_| {
                let worker = Worker {
                    shared: shared.clone(),
                    writer: sender.clone(),
                    registry: registry.clone(),
                    recorder: recorder.clone(),
                };
                tokio::spawn(worker.run())
            })
            .collect();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let expiry = tokio::spawn(expire_dead_letters(weak.clone()));
            let leases = store
                .lease()
                .map(|lease| tokio::spawn(keep_leases(weak.clone(), lease)));
            Inner {
                expiry: Mutex::new(Some(expiry)),
                leases: Mutex::new(leases),
                store,
                registry,
                shared,
                writer: Mutex::new(Some(sender)),
                writer_thread: Mutex::new(Some(writer_thread)),
                workers: Mutex::new(workers),
            }
        });
        Ok(Self { inner })
    }

    /// Deletes the dead letters past their flow's retention (`retry.dead_letter_retention_hours`;
    /// a flow no longer live keeps the default), as of `now_ms`. The queue does this every
    /// minute on its own. Blocking: it deletes from the store.
    ///
    /// # Errors
    /// The store fails.
    pub fn expire_dead_letters(&self, now_ms: i64) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let mut expired = 0;
        for (tenant, flow) in inner.store.dead_flows()? {
            let retention = inner.registry.get(&tenant, &flow).map_or_else(
                || RetryPolicy::default().dead_letter_retention(),
                |f| f.retry.dead_letter_retention(),
            );
            let before = now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(0));
            expired += inner.store.prune_dead(&tenant, &flow, before)?;
        }
        inner
            .shared
            .stats
            .dead_expired
            .fetch_add(expired, Ordering::Relaxed);
        Ok(expired)
    }

    /// Stores a request of an async flow; resolves once it is durably committed, with its id.
    ///
    /// # Errors
    /// The queue (or the tenant's share of it) is full, or it cannot commit.
    pub async fn accept(&self, event: NewEvent) -> Result<u64, AcceptError> {
        let shared = &self.inner.shared;
        let stats = &shared.stats;
        if shared.closing.load(Ordering::Acquire) {
            stats.refused_unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(AcceptError::Unavailable(
                "the server is shutting down".into(),
            ));
        }
        if let Err(full) = shared.scheduler().reserve(&event.tenant) {
            stats.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(AcceptError::Full(match full {
                Full::Queue { max } => format!("it holds {max} events, its bound"),
                Full::Tenant { max } => format!("this tenant has {max} events waiting, its bound"),
            }));
        }
        let tenant = event.tenant.clone();
        let (reply, committed) = oneshot::channel();
        let sent = self.writer().as_ref().is_some_and(|w| {
            w.send(Message::Accept(event, Instant::now(), reply))
                .is_ok()
        });
        let outcome = match sent {
            true => match committed.await {
                Ok(Ok(id)) => Ok(id),
                Ok(Err(error)) => Err(AcceptError::Unavailable(error)),
                Err(_) => Err(AcceptError::Unavailable("the queue writer stopped".into())),
            },
            false => {
                shared.scheduler().release(&tenant);
                Err(AcceptError::Unavailable("the queue writer stopped".into()))
            }
        };
        // Committed requests are counted by the writer, even those whose client left before
        // the answer (their events are kept and run).
        if outcome.is_err() {
            stats.refused_unavailable.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// A flow's events in the queue, and how many are dead letters. Blocking (reads the store).
    ///
    /// # Errors
    /// The store fails.
    pub fn flow_depth(&self, tenant: &str, flow: &str) -> Result<(FlowDepth, u64), StoreError> {
        let depth = self.inner.shared.scheduler().flow_depth(tenant, flow);
        let dead = self.inner.store.dead_count(tenant, flow)?;
        Ok((depth, dead))
    }

    /// The store, for reading dead letters.
    pub fn store(&self) -> &Arc<dyn QueueStore> {
        &self.inner.store
    }

    /// Puts a dead letter back in the queue, as a new first attempt. Blocking.
    ///
    /// # Errors
    /// No such dead letter, the queue is full, or the store fails.
    pub fn replay(&self, tenant: &str, flow: &str, id: u64) -> Result<(), ReplayError> {
        let shared = &self.inner.shared;
        // Hold a place first, so a replay cannot push the queue past its bound.
        shared
            .scheduler()
            .reserve(tenant)
            .map_err(|_| ReplayError::Full)?;
        let now = now_ms();
        match self.inner.store.revive(tenant, flow, id, now) {
            Ok(event) => {
                shared.scheduler().admit(Job::from(event), now, now);
                shared.stats.replayed.fetch_add(1, Ordering::Relaxed);
                shared.wake.notify_waiters();
                Ok(())
            }
            Err(error) => {
                shared.scheduler().release(tenant);
                Err(ReplayError::Store(error))
            }
        }
    }

    pub fn stats(&self) -> &QueueStats {
        &self.inner.shared.stats
    }

    /// Events held in all, and events running.
    pub fn depth(&self) -> (usize, usize) {
        let s = self.inner.shared.scheduler();
        (s.depth(), s.in_flight())
    }

    /// Stops taking requests, lets running attempts finish (each within its deadline), commits
    /// what they and the last requests left, and stops the writer. Events not yet run stay in
    /// the queue for the next start. Returns false if that took longer than `timeout`.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let shared = &self.inner.shared;
        shared.closing.store(true, Ordering::Release);
        shared.wake.notify_waiters();
        if let Some(expiry) = lock(&self.inner.expiry).take() {
            expiry.abort();
        }
        if let Some(leases) = lock(&self.inner.leases).take() {
            leases.abort();
        }
        let workers = std::mem::take(&mut *lock(&self.inner.workers));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut finished = true;
        for mut worker in workers {
            if tokio::time::timeout_at(deadline, &mut worker)
                .await
                .is_err()
            {
                // Past the time allowed: the attempt is abandoned, its event stays in the queue
                // and runs again at the next start.
                worker.abort();
                let _ = worker.await;
                finished = false;
            }
        }
        // Dropping the last sender ends the writer once it has committed everything sent.
        drop(lock(&self.inner.writer).take());
        let thread = lock(&self.inner.writer_thread).take();
        let joined = match thread {
            Some(thread) => tokio::task::spawn_blocking(move || thread.join().is_ok())
                .await
                .unwrap_or(false),
            None => true,
        };
        // What is left in memory is still in the store: the other nodes claim it now instead of
        // after the lease.
        let store = self.inner.store.clone();
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || store.release()).await {
            tracing::warn!(%error, "cannot give up this node's lease on its async events");
        }
        finished && joined
    }

    fn writer(&self) -> MutexGuard<'_, Option<Sender<Message>>> {
        lock(&self.inner.writer)
    }
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the async queue is full")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer thread: group commit. Blocks for the first message, takes every other message
/// already waiting, commits them in one transaction, then answers the requests and hands the
/// new events to the scheduler. Ends when every sender is gone and the channel is empty.
///
/// Outcomes a failed commit could not write are kept ([`Unwritten`]) and written again, in a
/// transaction of their own, after the next commit that succeeds or when no message has come for
/// [`UNWRITTEN_RETRY`]: the scheduler has already let go of a handled event or a dead letter, so without this the event
/// would stay in the store, unseen, until the next start.
fn write_loop(store: &dyn QueueStore, shared: &Shared, receiver: &Receiver<Message>) {
    let mut unwritten = Unwritten::default();
    loop {
        let first = match unwritten.due() {
            None => receiver.recv().ok(),
            Some(due) => match receiver.recv_timeout(due.saturating_duration_since(Instant::now()))
            {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => {
                    unwritten.write(store, shared, false);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(first) = first else {
            // Shutting down: one last try, else the events run again at the next start.
            unwritten.write(store, shared, false);
            return;
        };
        let mut accepts = Vec::new();
        let mut replies = Vec::new();
        let mut completions = Vec::new();
        let mut dead_in = Vec::new();
        let mut take = |message| match message {
            Message::Accept(event, at, reply) => {
                accepts.push(event);
                replies.push((at, reply));
            }
            Message::Complete(completion, dead) => completions.push((completion, dead)),
        };
        take(first);
        for message in receiver.try_iter().take(MAX_BATCH - 1) {
            take(message);
        }
        let (outcomes, dead): (Vec<Completion>, Vec<_>) = completions.into_iter().unzip();
        match store.commit(&accepts, &outcomes) {
            Ok(ids) => {
                shared.stats.commits.fetch_add(1, Ordering::Relaxed);
                let committed = ids.len() as u64;
                shared
                    .stats
                    .accepted
                    .fetch_add(committed, Ordering::Relaxed);
                if !accepts.is_empty() {
                    let now = now_ms();
                    let mut scheduler = shared.scheduler();
                    for ((event, &id), (at, _)) in accepts.into_iter().zip(&ids).zip(&replies) {
                        let mut job = Job::from(StoredEvent {
                            id,
                            event,
                            attempts: 0,
                            next_at_ms: now,
                        });
                        job.accepted = Some(*at);
                        scheduler.admit(job, now, now);
                    }
                    drop(scheduler);
                    shared.wake.notify_waiters();
                }
                for ((_, reply), id) in replies.into_iter().zip(ids) {
                    // A client that went away still had its request stored; nothing to undo.
                    let _ = reply.send(Ok(id));
                }
                // A later outcome of an event replaces one an earlier commit left unwritten.
                unwritten.written(&outcomes);
                dead_in.extend(dead.into_iter().flatten());
                trim_dead_letters(store, shared, dead_in);
                // The store takes commits again: what it refused before follows at once.
                unwritten.write(store, shared, true);
            }
            Err(error) => {
                // Requests are refused (503) and nothing of them is kept. Outcomes are kept and
                // written again (see `Unwritten`).
                tracing::error!(%error, requests = accepts.len(), outcomes = outcomes.len(),
                    "the async queue could not commit");
                shared.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                let mut scheduler = shared.scheduler();
                for event in &accepts {
                    scheduler.release(&event.tenant);
                }
                drop(scheduler);
                for (_, reply) in replies {
                    let _ = reply.send(Err(format!("the commit failed: {error}")));
                }
                unwritten.keep(outcomes.into_iter().zip(dead), shared);
            }
        }
    }
}

/// How long outcomes left unwritten by a failed commit wait, at most, before the writer tries
/// them again: sooner when a commit succeeds.
const UNWRITTEN_RETRY: Duration = Duration::from_secs(1);

/// The most outcomes the writer keeps to write again, and the most bytes of failures (their
/// errors and logs) among them. An event has one here at most (its latest replaces the others),
/// so this is reached only when the store has refused commits for a long time with many events
/// in the queue; past it the oldest are let go, and their events run again at the next start, as
/// at-least-once delivery allows.
const MAX_UNWRITTEN: usize = 10_000;
const MAX_UNWRITTEN_BYTES: usize = 64 << 20;

/// How many times an outcome is refused on its own, while the store takes other commits, before
/// it is let go: one the store refuses for itself (whatever the reason) must not be tried forever.
const MAX_TRIES_ALONE: u32 = 5;

/// The most commits one search for the outcomes the store refuses may make, so that it never holds
/// the writer (and new requests) for long: each is a transaction, an fsync with SQLite.
const MAX_SEARCH_COMMITS: u32 = 32;

/// One outcome a failed commit did not write.
struct Kept {
    completion: Completion,
    /// A dead letter's tenant and flow.
    dead: Option<FlowOf>,
    /// Times it failed on its own while the store took other commits.
    tries: u32,
    /// What it holds, about, in bytes.
    bytes: usize,
}

impl Kept {
    fn new(completion: Completion, dead: Option<FlowOf>) -> Self {
        let bytes = match &completion {
            Completion::Done { .. } => 0,
            Completion::Retry { failure, .. } | Completion::Dead { failure, .. } => {
                failure.kind.len()
                    + failure.error.len()
                    + failure
                        .log
                        .iter()
                        .map(|line| line.message.len() + 16)
                        .sum::<usize>()
            }
        } + 64;
        Self {
            completion,
            dead,
            tries: 0,
            bytes,
        }
    }

    fn id(&self) -> u64 {
        self.completion.id()
    }
}

/// Outcomes that a failed commit did not write, in the order they came, and when to try them
/// again.
#[derive(Default)]
struct Unwritten {
    outcomes: Vec<Kept>,
    retry_at: Option<Instant>,
}

impl Unwritten {
    /// When these outcomes are to be tried again; `None` when there are none.
    fn due(&self) -> Option<Instant> {
        self.retry_at.filter(|_| !self.outcomes.is_empty())
    }

    /// Keeps `outcomes`, which a commit just failed to write, in place of any older outcome of
    /// the same events.
    fn keep(
        &mut self,
        outcomes: impl IntoIterator<Item = (Completion, Option<FlowOf>)>,
        shared: &Shared,
    ) {
        let outcomes: Vec<Kept> = outcomes
            .into_iter()
            .map(|(completion, dead)| Kept::new(completion, dead))
            .collect();
        if outcomes.is_empty() {
            return;
        }
        let newer: HashSet<u64> = outcomes.iter().map(Kept::id).collect();
        self.outcomes.retain(|kept| !newer.contains(&kept.id()));
        self.outcomes.extend(outcomes);
        // The oldest go first: past the count, then while the rest is over the bytes.
        let mut over = self.outcomes.len().saturating_sub(MAX_UNWRITTEN);
        let mut left: usize = self.outcomes[over..].iter().map(|kept| kept.bytes).sum();
        while left > MAX_UNWRITTEN_BYTES {
            left -= self.outcomes[over].bytes;
            over += 1;
        }
        if over > 0 {
            self.let_go(over, shared);
        }
        // Not at once, even if an earlier time has passed: the store has just refused a commit.
        let now = Instant::now();
        self.retry_at = Some(match self.retry_at {
            Some(at) if at > now => at,
            _ => now + UNWRITTEN_RETRY,
        });
    }

    /// Lets the oldest `count` outcomes go, counted: their events run again at the next start.
    fn let_go(&mut self, count: usize, shared: &Shared) {
        self.outcomes.drain(..count);
        shared
            .stats
            .unwritten_dropped
            .fetch_add(count as u64, Ordering::Relaxed);
        tracing::error!(
            dropped = count,
            "outcomes of async events let go after failed commits: their events run again at \
             the next start"
        );
    }

    /// Forgets the outcomes that `written`, just committed, replace.
    fn written(&mut self, written: &[Completion]) {
        if self.outcomes.is_empty() || written.is_empty() {
            return;
        }
        let ids: HashSet<u64> = written.iter().map(Completion::id).collect();
        self.outcomes.retain(|kept| !ids.contains(&kept.id()));
        if self.outcomes.is_empty() {
            self.retry_at = None;
        }
    }

    /// Tries to write the kept outcomes, in one transaction of their own (so that one the store
    /// refuses never costs new requests their commit). When it fails:
    /// - `store_up` (another commit just succeeded): [`Self::search`] writes what it can and finds
    ///   the outcomes the store refuses on their own;
    /// - otherwise they wait another [`UNWRITTEN_RETRY`].
    fn write(&mut self, store: &dyn QueueStore, shared: &Shared, store_up: bool) {
        if self.outcomes.is_empty() {
            self.retry_at = None;
            return;
        }
        let kept = std::mem::take(&mut self.outcomes);
        let mut dead_in = Vec::new();
        let all: Vec<&Kept> = kept.iter().collect();
        let left = match commit_kept(store, shared, &all, &mut dead_in) {
            Ok(written) => {
                tracing::info!(
                    outcomes = written,
                    "outcomes of async events written after a failed commit"
                );
                Vec::new()
            }
            Err(error) => {
                tracing::error!(%error, outcomes = kept.len(),
                    "the async queue could not commit outcomes it kept after a failed commit");
                match store_up {
                    true => Self::search(store, shared, kept, &mut dead_in),
                    false => kept,
                }
            }
        };
        self.outcomes = left;
        self.retry_at = (!self.outcomes.is_empty()).then(|| Instant::now() + UNWRITTEN_RETRY);
        trim_dead_letters(store, shared, dead_in);
    }

    /// Writes what it can of `kept`, which the store just refused as one commit, by halves: a
    /// half that commits is written; one that does not is halved again, down to the single
    /// outcomes the store refuses, which count a try (and are let go at [`MAX_TRIES_ALONE`]). If
    /// both halves of the whole are refused, nothing says the outcomes are at fault rather than
    /// the store: the search stops and they wait, tries uncounted. At most
    /// [`MAX_SEARCH_COMMITS`] commits. Answers what is left, oldest first.
    fn search(
        store: &dyn QueueStore,
        shared: &Shared,
        kept: Vec<Kept>,
        dead_in: &mut Vec<FlowOf>,
    ) -> Vec<Kept> {
        // Each outcome with its place, so that what is left keeps its order.
        let mut refused: Vec<Vec<(usize, Kept)>> = vec![kept.into_iter().enumerate().collect()];
        // What is left, and whether it was refused alone.
        let mut left: Vec<(usize, Kept, bool)> = Vec::new();
        let mut any_written = false;
        let mut commits = 0;
        while let Some(mut group) = refused.pop() {
            if group.len() == 1 {
                left.extend(group.into_iter().map(|(at, kept)| (at, kept, true)));
                continue;
            }
            let first: Vec<_> = group.drain(..group.len() / 2).collect();
            for half in [first, group] {
                if commits == MAX_SEARCH_COMMITS {
                    left.extend(half.into_iter().map(|(at, kept)| (at, kept, false)));
                    continue;
                }
                commits += 1;
                let outcomes: Vec<&Kept> = half.iter().map(|(_, kept)| kept).collect();
                match commit_kept(store, shared, &outcomes, dead_in) {
                    Ok(_) => any_written = true,
                    Err(_) => refused.push(half),
                }
            }
            if !any_written {
                // Both halves of the whole refused: the store, not an outcome, is at fault.
                let waiting = refused.drain(..).flatten();
                left.extend(waiting.map(|(at, kept)| (at, kept, false)));
                break;
            }
        }
        left.sort_unstable_by_key(|(at, _, _)| *at);
        let mut out = Vec::with_capacity(left.len());
        let mut dropped = 0;
        for (_, mut kept, alone) in left {
            if alone {
                kept.tries += 1;
                if kept.tries >= MAX_TRIES_ALONE {
                    tracing::error!(
                        event = kept.id(),
                        "an async event's outcome let go: the store refused it alone {} times \
                         while it took others; the event runs again at the next start",
                        MAX_TRIES_ALONE
                    );
                    dropped += 1;
                    continue;
                }
            }
            out.push(kept);
        }
        shared
            .stats
            .unwritten_dropped
            .fetch_add(dropped, Ordering::Relaxed);
        out
    }
}

/// Commits `kept` in one transaction, and counts it; on success, notes the dead letters' flows.
fn commit_kept(
    store: &dyn QueueStore,
    shared: &Shared,
    kept: &[&Kept],
    dead_in: &mut Vec<FlowOf>,
) -> Result<usize, StoreError> {
    let outcomes: Vec<Completion> = kept.iter().map(|k| k.completion.clone()).collect();
    match store.commit(&[], &outcomes) {
        Ok(_) => {
            shared.stats.commits.fetch_add(1, Ordering::Relaxed);
            dead_in.extend(kept.iter().filter_map(|k| k.dead.clone()));
            Ok(kept.len())
        }
        Err(error) => {
            shared.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            Err(error)
        }
    }
}

/// Keeps each flow that just got dead letters within `max_dead_per_flow` of them, deleting its
/// oldest: whoever can reach an async flow's URL can make its plugin fail, and dead letters are
/// not counted in the queue's depth, so without this bound they could fill the disk until their
/// retention.
fn trim_dead_letters(
    store: &dyn QueueStore,
    shared: &Shared,
    mut flows: Vec<(Arc<str>, Arc<str>)>,
) {
    flows.sort_unstable();
    flows.dedup();
    for (tenant, flow) in flows {
        match store.trim_dead(&tenant, &flow, shared.max_dead_per_flow) {
            Ok(0) => {}
            Ok(deleted) => {
                shared
                    .stats
                    .dead_trimmed
                    .fetch_add(deleted, Ordering::Relaxed);
                tracing::warn!(tenant = %tenant, flow = %flow, deleted,
                    kept = shared.max_dead_per_flow,
                    "the flow's oldest dead letters deleted: it holds as many as it may keep");
            }
            // Tried again with the flow's next dead letter.
            Err(error) => tracing::error!(%error, tenant = %tenant, flow = %flow,
                "cannot keep the flow's dead letters within their bound"),
        }
    }
}

/// One worker: takes the next event, runs `record`, reports the outcome.
struct Worker {
    shared: Arc<Shared>,
    writer: Sender<Message>,
    registry: Arc<Registry>,
    recorder: Recorder,
}

/// What one attempt came to.
struct Attempt {
    outcome: Result<(), (String, String)>,
    plugin: String,
    version: u32,
    usage: Usage,
    retry: RetryPolicy,
}

impl Worker {
    async fn run(self) {
        loop {
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            // Registered before looking, so a wake-up between the look and the wait is kept.
            notified.as_mut().enable();
            if self.shared.closing.load(Ordering::Acquire) {
                return;
            }
            let (job, wake_at) = {
                let mut scheduler = self.shared.scheduler();
                (scheduler.next(now_ms()), scheduler.wake_at())
            };
            match (job, wake_at) {
                (Some(job), _) => self.attempt(job).await,
                (None, Some(due)) => {
                    let wait = u64::try_from(due - now_ms()).unwrap_or(0);
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    }
                }
                (None, None) => notified.await,
            }
        }
    }

    async fn attempt(&self, job: Job) {
        let attempt_no = job.attempts + 1;
        // Observed once the first attempt has run (not when it was put off).
        let start_delay = match (job.attempts, job.accepted) {
            (0, Some(accepted)) => Some(accepted.elapsed()),
            _ => None,
        };
        let span = tracing::info_span!(
            "async",
            tenant = %job.tenant,
            flow = %job.flow,
            event = job.id,
            attempt = attempt_no,
            call_sid = job.call_sid.as_deref().unwrap_or(""),
        );
        let attempt =
            tracing::Instrument::instrument(self.execute(&job, attempt_no), span.clone()).await;
        let _entered = span.enter();
        let overloaded =
            matches!(&attempt.outcome, Err((kind, _)) if kind == FailureKind::Overloaded.as_str());
        if overloaded && job.deferrals < MAX_DEFERRALS {
            // The plugin did not run: the sandbox had no room (other calls held it). Not the
            // event's fault, so not one of its attempts: it waits and runs as the same attempt,
            // with no record and nothing written (a restart runs it as it was). Put off
            // MAX_DEFERRALS times in a row (a flow that can never get room), it counts.
            self.shared.stats.deferred.fetch_add(1, Ordering::Relaxed);
            let mut job = job;
            job.deferrals += 1;
            let wait = defer_ms(job.deferrals, crate::flow::retry::random_unit());
            let due = now_ms().saturating_add(wait);
            tracing::debug!(retry_in_ms = wait, "no room in the sandbox; put off");
            self.shared
                .scheduler()
                .finish(job, Finish::Later { due_ms: due });
            self.shared.wake.notify_waiters();
            return;
        }
        if let Some(delay) = start_delay {
            self.shared.stats.start_delay.observe(delay);
        }
        trace_lines(&attempt.usage.log);
        let now = now_ms();
        let (completion, finish) = match &attempt.outcome {
            Ok(()) => {
                tracing::debug!(elapsed_us = attempt.usage.elapsed_us, "recorded");
                self.shared.stats.handled.fetch_add(1, Ordering::Relaxed);
                (Completion::Done { id: job.id }, Finish::Gone)
            }
            Err((kind, error)) => {
                self.shared
                    .stats
                    .failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                let failure = Failure {
                    kind: kind.clone(),
                    error: error.clone(),
                    log: attempt.usage.log.clone(),
                    at_ms: now,
                };
                if attempt.retry.retries_after(attempt_no) {
                    let delay = attempt
                        .retry
                        .delay(attempt_no, crate::flow::retry::random_unit());
                    let due = now.saturating_add(delay.as_millis() as i64);
                    tracing::warn!(kind = %kind, error = %Escaped(error), retry_in_ms = delay.as_millis() as u64,
                        "attempt failed; will retry");
                    let completion = Completion::Retry {
                        id: job.id,
                        attempts: attempt_no,
                        next_at_ms: due,
                        failure,
                    };
                    (completion, Finish::Retry { due_ms: due })
                } else {
                    tracing::warn!(kind = %kind, error = %Escaped(error), attempts = attempt_no,
                        "attempt failed, the last one allowed; kept as a dead letter");
                    self.shared
                        .stats
                        .dead_lettered
                        .fetch_add(1, Ordering::Relaxed);
                    let completion = Completion::Dead {
                        id: job.id,
                        attempts: attempt_no,
                        failure,
                    };
                    (completion, Finish::Gone)
                }
            }
        };
        let failed = attempt.outcome.is_err();
        let kept = self
            .recorder
            .record(failed, || decision_record(&job, attempt_no, &attempt));
        if !kept && let Some(flow) = self.registry.get(&job.tenant, &job.flow) {
            flow.metrics.records_dropped.inc();
        }
        // If the writer is gone (shutdown), the outcome is not written: the event runs again at
        // the next start.
        let dead = matches!(completion, Completion::Dead { .. })
            .then(|| (job.tenant.clone(), job.flow.clone()));
        let _ = self.writer.send(Message::Complete(completion, dead));
        self.shared.scheduler().finish(job, finish);
        if matches!(finish, Finish::Retry { .. } | Finish::Later { .. }) {
            // Idle workers may be sleeping past the new retry's time.
            self.shared.wake.notify_waiters();
        }
    }

    async fn execute(&self, job: &Job, attempt_no: u32) -> Attempt {
        let Some(flow) = self.registry.get(&job.tenant, &job.flow) else {
            return Attempt {
                outcome: Err((
                    "flow_unavailable".into(),
                    format!(
                        "flow {:?} is not served (deleted, or its tenant disabled)",
                        job.flow.as_ref()
                    ),
                )),
                plugin: String::new(),
                version: 0,
                usage: Usage::default(),
                retry: RetryPolicy::default(),
            };
        };
        let event = Event {
            id: job.id,
            attempt: attempt_no,
            accepted_at_ms: job.accepted_at_ms,
        };
        // A canary answers its share of the events too, by the call's CallSid.
        let (version, plugin) = flow.pick(job.call_sid.as_deref());
        let report = self
            .registry
            .sandbox()
            .record(
                plugin,
                &flow.share,
                event,
                call::parse(&job.query),
                &flow.limits,
                flow.grants.clone(),
            )
            .await;
        let (outcome, usage) = Usage::of(report);
        Attempt {
            outcome: outcome.map_err(|e| (e.kind().as_str().to_owned(), e.to_string())),
            plugin: flow.plugin_name.clone(),
            version,
            usage,
            retry: flow.retry,
        }
    }
}

/// An attempt as a decision record: `outcome` is `recorded` or the failure kind, `branch` is
/// `success` for `recorded`, else `failure`, and `reason` names the event and attempt.
fn decision_record(job: &Job, attempt_no: u32, attempt: &Attempt) -> DecisionRecord {
    let (branch, outcome, error) = match &attempt.outcome {
        Ok(()) => (Branch::Success, "recorded".to_owned(), None),
        Err((kind, error)) => (Branch::Failure, kind.clone(), Some(error.clone())),
    };
    DecisionRecord::new(
        Subject {
            tenant: &job.tenant,
            flow: &job.flow,
            plugin: &attempt.plugin,
            version: attempt.version,
            // The sandbox blanked them out of the log and the error; the reason is the host's.
            secrets: &[],
        },
        job.call_sid.clone(),
        Answer {
            branch,
            outcome,
            reason: Some(format!("event {} attempt {attempt_no}", job.id)),
            error,
            answer: None,
        },
        attempt.usage.clone(),
    )
}

/// The queue's state for one flow, as the API shows it: an async flow's events in the queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FlowQueue {
    pub flow: String,
    /// Due, waiting for a worker.
    pub ready: u64,
    /// Failed, or put off for want of room in the sandbox, waiting for their next attempt.
    pub retrying: u64,
    /// Running now.
    pub in_flight: u64,
    /// Dead letters.
    pub dead: u64,
    /// When the oldest waiting or running event was accepted (milliseconds since the Unix
    /// epoch); null when none.
    pub oldest_accepted_at_ms: Option<i64>,
    /// How long ago that was, in milliseconds; null when none.
    pub oldest_age_ms: Option<i64>,
}

/// How often the queue deletes dead letters past their retention.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// Every [`EXPIRE_EVERY`], deletes the dead letters past their retention, until the queue is
/// gone or closing.
async fn expire_dead_letters(inner: std::sync::Weak<Inner>) {
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + EXPIRE_EVERY, EXPIRE_EVERY);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shared.closing.load(Ordering::Acquire) {
            return;
        }
        let queue = Queue { inner };
        let expired =
            tokio::task::spawn_blocking(move || queue.expire_dead_letters(now_ms())).await;
        match expired {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                dead_letters = n,
                "expired dead letters past their retention"
            ),
            Ok(Err(error)) => tracing::warn!(%error, "cannot expire dead letters"),
            Err(error) => tracing::warn!(%error, "the dead-letter expiry task failed"),
        }
    }
}

/// How long an attempt the sandbox had no room for waits, the first time: then twice as long each
/// time in a row, up to [`MAX_DEFER_MS`], plus up to as much again at random, so that put-off
/// events do not all come back at once.
const DEFER_MS: i64 = 100;
const MAX_DEFER_MS: i64 = 5_000;
/// Times in a row an attempt may be put off before it counts as a failed one (2 to 4 minutes).
const MAX_DEFERRALS: u32 = 30;

/// The wait before an attempt put off `deferrals` times already runs again, `unit` in [0, 1)
/// choosing its jitter.
fn defer_ms(deferrals: u32, unit: f64) -> i64 {
    let base = DEFER_MS
        .saturating_mul(1 << deferrals.min(16))
        .min(MAX_DEFER_MS);
    base + (base as f64 * unit) as i64
}

/// The most orphaned events one claim takes (more are claimed at the next renewal).
const MAX_CLAIM: usize = 1000;

/// With a shared queue: renews this node's lease every quarter of it, and claims the pending
/// events of nodes whose lease ran out, as long as this node's queue has room for them.
async fn keep_leases(inner: std::sync::Weak<Inner>, lease: Duration) {
    let every = (lease / 4).max(Duration::from_millis(50));
    // Set when a renewal finds the lease ran out, until this node has let go of what others
    // claimed meanwhile (the check may fail while the database is hard to reach).
    let mut unchecked = false;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shared.closing.load(Ordering::Acquire) {
            return;
        }
        let room = {
            let s = inner.shared.scheduler();
            s.room().min(MAX_CLAIM)
        };
        let store = inner.store.clone();
        let renewed = tokio::task::spawn_blocking(move || store.renew()).await;
        match renewed {
            Ok(Ok(lapsed)) => {
                unchecked |= lapsed;
                if unchecked {
                    unchecked = !let_go_of_claimed(&inner).await;
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot renew this node's lease");
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "the lease task failed");
                continue;
            }
        }
        if room == 0 {
            continue;
        }
        let store = inner.store.clone();
        let claimed = tokio::task::spawn_blocking(move || store.claim_orphans(room as u32)).await;
        match claimed {
            Ok(Ok(events)) if events.is_empty() => {}
            Ok(Ok(events)) => {
                let now = now_ms();
                let mut scheduler = inner.shared.scheduler();
                // An event this node still has in memory (let go of while it ran, and claimed
                // back once the other node's lease ran out too) is held again, not added twice.
                let held: HashSet<u64> = scheduler.held().into_iter().collect();
                let mut claimed = 0;
                for event in events {
                    if held.contains(&event.id) {
                        scheduler.take_back(event.id);
                        continue;
                    }
                    let due = event.next_at_ms;
                    scheduler.restore(Job::from(event), due, now);
                    claimed += 1;
                }
                drop(scheduler);
                tracing::info!(
                    events = claimed,
                    "claimed the async events of a node whose lease ran out"
                );
                inner.shared.wake.notify_waiters();
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot claim the events of stopped nodes"),
            Err(error) => tracing::warn!(%error, "the lease task failed"),
        }
    }
}

/// After this node's lease ran out (a pause longer than the lease, or the database out of
/// reach): lets go of the events other nodes claimed meanwhile, so that they are not run on two
/// nodes from then on. A run already under way finishes; its outcome is not written (the store
/// writes only the holder's). Whether it could tell which events others took.
async fn let_go_of_claimed(inner: &Inner) -> bool {
    let held = inner.shared.scheduler().held();
    let store = inner.store.clone();
    let kept = tokio::task::spawn_blocking(move || {
        let kept = store.still_held(&held)?;
        Ok::<_, StoreError>((held, kept))
    })
    .await;
    match kept {
        Ok(Ok((held, kept))) => {
            let kept: HashSet<u64> = kept.into_iter().collect();
            let taken: HashSet<u64> = held.into_iter().filter(|id| !kept.contains(id)).collect();
            if taken.is_empty() {
                tracing::warn!("this node's lease ran out; no other node took its events");
                return true;
            }
            let left = inner.shared.scheduler().forget(&taken);
            tracing::warn!(
                taken = taken.len(),
                waiting = left,
                "this node's lease ran out and other nodes took some of its events: it lets go \
                 of them"
            );
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "this node's lease ran out; cannot tell which events it holds");
            false
        }
        Err(error) => {
            tracing::warn!(%error, "the lease task failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreResult;

    fn shared() -> Shared {
        let bounds = Bounds {
            max_depth: 10,
            max_depth_per_tenant: 10,
            max_in_flight_per_tenant: 1,
        };
        Shared {
            scheduler: Mutex::new(Scheduler::new(bounds)),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            stats: QueueStats::default(),
            max_dead_per_flow: 1,
        }
    }

    fn ids(unwritten: &Unwritten) -> Vec<u64> {
        unwritten.outcomes.iter().map(Kept::id).collect()
    }

    fn done(id: u64) -> (Completion, Option<FlowOf>) {
        (Completion::Done { id }, None)
    }

    #[test]
    fn an_events_latest_unwritten_outcome_replaces_the_others_and_a_written_one_drops_it() {
        let shared = shared();
        let mut unwritten = Unwritten::default();
        assert_eq!(unwritten.due(), None);
        unwritten.keep([done(1), done(2), done(3)], &shared);
        let due = unwritten.due().expect("kept outcomes are due again");
        assert!(due > Instant::now() && due <= Instant::now() + UNWRITTEN_RETRY);
        unwritten.keep([done(2)], &shared);
        assert_eq!(ids(&unwritten), [1, 3, 2]);
        unwritten.written(&[Completion::Done { id: 1 }, Completion::Done { id: 9 }]);
        assert_eq!(ids(&unwritten), [3, 2]);
        unwritten.written(&[Completion::Done { id: 3 }, Completion::Done { id: 2 }]);
        assert_eq!(unwritten.due(), None, "nothing left to write");
    }

    /// The real queue store, refusing every commit while `down`, and any commit that holds the
    /// outcome of event `poison`.
    struct Refusing {
        store: SqliteQueue,
        down: AtomicBool,
        poison: u64,
    }

    impl Refusing {
        fn refused() -> StoreError {
            StoreError::InUse {
                what: "refused by the test".into(),
            }
        }
    }

    impl QueueStore for Refusing {
        fn commit(&self, accepts: &[NewEvent], done: &[Completion]) -> StoreResult<Vec<u64>> {
            if self.down.load(Ordering::Relaxed) || done.iter().any(|c| c.id() == self.poison) {
                return Err(Self::refused());
            }
            self.store.commit(accepts, done)
        }
        fn pending(&self) -> StoreResult<Vec<StoredEvent>> {
            self.store.pending()
        }
        fn dead_letters(
            &self,
            tenant: &str,
            flow: &str,
            before_id: Option<u64>,
            limit: u32,
        ) -> StoreResult<Vec<DeadLetter>> {
            self.store.dead_letters(tenant, flow, before_id, limit)
        }
        fn dead_letter(&self, tenant: &str, flow: &str, id: u64) -> StoreResult<DeadLetter> {
            self.store.dead_letter(tenant, flow, id)
        }
        fn dead_count(&self, tenant: &str, flow: &str) -> StoreResult<u64> {
            self.store.dead_count(tenant, flow)
        }
        fn revive(&self, tenant: &str, flow: &str, id: u64, now: i64) -> StoreResult<StoredEvent> {
            self.store.revive(tenant, flow, id, now)
        }
        fn delete_dead(&self, tenant: &str, flow: &str, id: u64) -> StoreResult<()> {
            self.store.delete_dead(tenant, flow, id)
        }
        fn dead_flows(&self) -> StoreResult<Vec<(String, String)>> {
            self.store.dead_flows()
        }
        fn prune_dead(&self, tenant: &str, flow: &str, before_ms: i64) -> StoreResult<u64> {
            self.store.prune_dead(tenant, flow, before_ms)
        }
        fn trim_dead(&self, tenant: &str, flow: &str, keep: u64) -> StoreResult<u64> {
            self.store.trim_dead(tenant, flow, keep)
        }
    }

    #[test]
    fn kept_outcomes_follow_a_commit_that_succeeds_and_one_the_store_refuses_alone_is_let_go() {
        let dir = std::env::temp_dir().join(format!(
            "passthru-unwritten-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Refusing {
            store: SqliteQueue::open(&dir).unwrap(),
            down: AtomicBool::new(false),
            poison: 0,
        };
        let event = |n: u64| NewEvent {
            tenant: "acme".into(),
            flow: "log".into(),
            call_sid: Some(format!("CA{n}")),
            query: String::new(),
            accepted_at_ms: 0,
        };
        let events = store.commit(&[event(1), event(2), event(3)], &[]).unwrap();
        let store = Refusing {
            poison: events[2],
            ..store
        };
        let shared = shared();
        let mut unwritten = Unwritten::default();

        // The store is down: the outcomes wait, their tries uncounted even when another commit
        // had just succeeded (the search stops when both halves are refused).
        store.down.store(true, Ordering::Relaxed);
        unwritten.keep(events.iter().map(|&id| done(id)), &shared);
        unwritten.write(&store, &shared, false);
        for _ in 0..2 * MAX_TRIES_ALONE {
            unwritten.write(&store, &shared, true);
        }
        assert_eq!(ids(&unwritten), events, "nothing written, nothing let go");
        assert!(unwritten.outcomes.iter().all(|kept| kept.tries == 0));
        assert!(unwritten.due().is_some_and(|at| at > Instant::now()));
        store.down.store(false, Ordering::Relaxed);

        // Up again, but the third outcome is refused whatever else the commit holds: the others
        // are written one by one, and it is tried alone until it is let go.
        for round in 1..=MAX_TRIES_ALONE {
            unwritten.write(&store, &shared, true);
            let left = if round < MAX_TRIES_ALONE {
                vec![events[2]]
            } else {
                vec![]
            };
            assert_eq!(ids(&unwritten), left, "round {round}");
        }
        assert_eq!(unwritten.due(), None);
        assert_eq!(shared.stats.unwritten_dropped.load(Ordering::Relaxed), 1);
        let pending: Vec<u64> = store.pending().unwrap().iter().map(|e| e.id).collect();
        assert_eq!(
            pending,
            [events[2]],
            "the first two left the store; the third runs again"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn past_their_bound_in_count_or_bytes_the_oldest_unwritten_outcomes_are_let_go() {
        let shared = shared();
        let mut unwritten = Unwritten::default();
        let failure = Failure {
            kind: "plugin_error".into(),
            error: "x".repeat(1 << 20),
            log: Vec::new(),
            at_ms: 0,
        };
        let retry = |id: u64| {
            let retry = Completion::Retry {
                id,
                attempts: 1,
                next_at_ms: 0,
                failure: failure.clone(),
            };
            (retry, None)
        };
        // 100 outcomes of 1 MiB each: 63 fit in 64 MiB, the oldest 37 are let go.
        unwritten.keep((1..=100).map(retry), &shared);
        assert_eq!(
            unwritten.outcomes.len(),
            63,
            "64 MiB less each one's own bytes"
        );
        assert_eq!(ids(&unwritten)[0], 38);
        let bytes: usize = unwritten.outcomes.iter().map(|kept| kept.bytes).sum();
        assert!(bytes <= MAX_UNWRITTEN_BYTES);
        assert_eq!(shared.stats.unwritten_dropped.load(Ordering::Relaxed), 37);
    }

    #[test]
    fn past_their_bound_the_oldest_unwritten_outcomes_are_let_go_and_counted() {
        let shared = shared();
        let mut unwritten = Unwritten::default();
        let over = 5;
        unwritten.keep((1..=(MAX_UNWRITTEN + over) as u64).map(done), &shared);
        assert_eq!(unwritten.outcomes.len(), MAX_UNWRITTEN);
        assert_eq!(ids(&unwritten)[0], over as u64 + 1, "the oldest went first");
        assert_eq!(
            shared.stats.unwritten_dropped.load(Ordering::Relaxed),
            over as u64
        );
    }

    #[test]
    fn a_put_off_attempt_waits_twice_as_long_each_time_up_to_its_bound() {
        let waits: Vec<i64> = (0..8).map(|n| defer_ms(n, 0.0)).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        assert_eq!(defer_ms(u32::MAX, 0.0), MAX_DEFER_MS);
        assert_eq!(defer_ms(0, 0.5), 150);
        assert!(defer_ms(40, 0.999) < 2 * MAX_DEFER_MS);
    }
}
