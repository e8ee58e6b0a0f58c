//! The thread that writes key-value changes to disk, in order, in batches.
//!
//! A change is queued under its bucket's lock (see the module above), so the disk applies each
//! key's changes in the order memory did. The thread sleeps while nothing is queued; once a change
//! arrives it waits one [`TICK`] for more, then commits all of them in one transaction: at most one
//! wake-up per tick however many plugins write, and a plugin never waits for it.
//!
//! A [`Barrier`] is answered once everything queued before it is committed (or failed): the admin
//! API waits on one, so its `200` means the change is on disk.
//!
//! A commit that fails is retried (a disk briefly full, a lock held): later writes wait behind
//! it. A commit the database refuses for the data it was given ([`Refused`]) is not: retrying
//! cannot help, so the batch is split and committed in parts, and only the writes the database
//! refuses are given up; every other write of the batch still reaches the disk.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::KvError;

/// How long the writer gathers changes before it commits them: the longest a plugin's write
/// waits to reach the disk, and about the longest an admin write waits for its answer.
pub const TICK: Duration = Duration::from_millis(10);
/// Changes that may wait for the disk before plugins' writes are refused (`unavailable`).
pub const MAX_PENDING_WRITES: usize = 100_000;
/// Bytes of keys and values that may wait for the disk before plugins' writes are refused.
pub const MAX_PENDING_BYTES: usize = 64 << 20;
/// What one tenant's writes may take of those bytes: a quarter, each write counted as its bytes
/// and 64 more, so that one tenant rewriting a key in a loop fills its own share and never the
/// others'.
pub const MAX_PENDING_PER_TENANT: usize = MAX_PENDING_BYTES / 4;
/// And of those writes: a quarter.
pub const MAX_PENDING_WRITES_PER_TENANT: usize = MAX_PENDING_WRITES / 4;
/// What a write counts for in its tenant's share besides its bytes (a delete has few).
const WRITE_OVERHEAD: usize = 64;

pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// One key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRow {
    pub tenant: Arc<str>,
    pub store: Arc<str>,
    pub key: String,
    pub value: String,
    pub expires_at_ms: Option<i64>,
}

/// One change, as the disk applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    Put(KvRow),
    Delete {
        tenant: Arc<str>,
        store: Arc<str>,
        key: String,
    },
    /// A bulk import: many puts.
    Import(Vec<KvRow>),
    /// Every key expired by `before_ms`.
    Sweep {
        before_ms: i64,
    },
}

impl KvWrite {
    /// Whether this write changes the store `scope` (a sweep changes no store in particular).
    fn is_in(&self, (tenant, store): &Scope) -> bool {
        self.scope().is_some_and(|(t, s)| t == tenant && s == store)
    }

    /// The store this write changes, by tenant and name (none for a sweep, or an empty import).
    fn scope(&self) -> Option<(&Arc<str>, &Arc<str>)> {
        match self {
            KvWrite::Put(row) => Some((&row.tenant, &row.store)),
            KvWrite::Delete { tenant, store, .. } => Some((tenant, store)),
            KvWrite::Import(rows) => rows.first().map(|row| (&row.tenant, &row.store)),
            KvWrite::Sweep { .. } => None,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            KvWrite::Put(row) => row.key.len() + row.value.len(),
            KvWrite::Delete { key, .. } => key.len(),
            KvWrite::Import(rows) => rows.iter().map(|r| r.key.len() + r.value.len()).sum(),
            KvWrite::Sweep { .. } => 0,
        }
    }
}

/// A store, by tenant and name: what a [`Barrier`] may be about.
pub(super) type Scope = (Arc<str>, Arc<str>);

/// A commit the database refused for the data it was given (a value or key it cannot hold, a
/// constraint): the same writes would be refused again, so the writer does not retry them. A
/// [`KvSink`] returns its error wrapped in this when it knows as much.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Where the keys are kept: what the store implements.
pub trait KvSink: Send + Sync + 'static {
    /// Every key not expired by `now_ms`.
    ///
    /// # Errors
    /// The database fails.
    fn kv_rows(&self, now_ms: i64) -> Result<Vec<KvRow>, SinkError>;
    /// Applies `writes` in order, in one transaction: all or none.
    ///
    /// # Errors
    /// The database fails; nothing was applied. [`Refused`] when it refuses the data itself.
    fn kv_apply(&self, writes: &[KvWrite]) -> Result<(), SinkError>;
}

/// A sink that keeps nothing: the stores live in memory only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDisk;

impl KvSink for NoDisk {
    fn kv_rows(&self, _now_ms: i64) -> Result<Vec<KvRow>, SinkError> {
        Ok(Vec::new())
    }

    fn kv_apply(&self, _writes: &[KvWrite]) -> Result<(), SinkError> {
        Ok(())
    }
}

enum Message {
    Write(KvWrite),
    /// Answered when the writes queued before it are committed; with a scope, it fails only for
    /// a write to that store given up.
    Barrier(
        tokio::sync::oneshot::Sender<Result<(), String>>,
        Option<Scope>,
    ),
}

/// Waits for the writes queued before it to be committed.
#[derive(Debug)]
pub struct Barrier(tokio::sync::oneshot::Receiver<Result<(), String>>);

impl Barrier {
    /// # Errors
    /// The commit failed (the message says why), or the writer is gone.
    pub async fn wait(self) -> Result<(), String> {
        self.0
            .await
            .unwrap_or_else(|_| Err("the key-value writer has stopped".into()))
    }

    /// As [`Barrier::wait`], off the async runtime.
    ///
    /// # Errors
    /// As [`Barrier::wait`].
    pub fn wait_blocking(self) -> Result<(), String> {
        self.0
            .blocking_recv()
            .unwrap_or_else(|_| Err("the key-value writer has stopped".into()))
    }
}

/// What the writer did, for metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub committed: AtomicU64,
    pub failed: AtomicU64,
    pending: AtomicUsize,
    pending_bytes: AtomicUsize,
    /// Each tenant's writes waiting: their bytes ([`WRITE_OVERHEAD`] each included) and how
    /// many; a tenant with none waiting has no entry.
    by_tenant: Mutex<HashMap<Arc<str>, Waiting>>,
}

/// One tenant's writes waiting for the disk, as its share counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Their keys' and values' bytes, and 64 a write.
    pub bytes: usize,
    pub writes: usize,
}

/// The queue's sending end and its counters.
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::Sender<Message>,
    stats: Arc<WriterStats>,
}

impl WriterStats {
    /// Writes waiting for the disk.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// What `tenant`'s waiting writes count for in its share.
    pub fn tenant_waiting(&self, tenant: &str) -> Waiting {
        self.tenants().get(tenant).copied().unwrap_or_default()
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Waiting>> {
        self.by_tenant.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `writes`, written or given up, out of their tenants' shares.
    fn settle(&self, writes: &[KvWrite]) {
        let mut by_tenant = self.tenants();
        for write in writes {
            if let Some((tenant, _)) = write.scope()
                && let Some(waiting) = by_tenant.get_mut(tenant)
            {
                waiting.bytes = waiting.bytes.saturating_sub(write.bytes() + WRITE_OVERHEAD);
                waiting.writes = waiting.writes.saturating_sub(1);
                if waiting.writes == 0 {
                    by_tenant.remove(tenant);
                }
            }
        }
    }
}

impl Writer {
    /// Starts the thread over `sink`.
    ///
    /// # Errors
    /// The thread cannot start.
    pub fn start(sink: Arc<dyn KvSink>) -> Result<Self, SinkError> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("passthru-kv-writer".into())
            .spawn(move || run(sink.as_ref(), &rx, &thread_stats))?;
        Ok(Self { tx, stats })
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Whether a plugin's write for `tenant` may be queued.
    ///
    /// # Errors
    /// [`KvError::Unavailable`] when the disk is too far behind, or this tenant's writes hold
    /// their share of what may wait.
    pub(super) fn room(&self, tenant: &str) -> Result<(), KvError> {
        let pending = self.stats.pending.load(Ordering::Relaxed);
        let bytes = self.stats.pending_bytes.load(Ordering::Relaxed);
        if pending >= MAX_PENDING_WRITES || bytes >= MAX_PENDING_BYTES {
            return Err(KvError::Unavailable(format!(
                "{pending} key-value writes ({bytes} bytes) are waiting for the disk; try again \
                 later"
            )));
        }
        let own = self.stats.tenant_waiting(tenant);
        if own.bytes >= MAX_PENDING_PER_TENANT || own.writes >= MAX_PENDING_WRITES_PER_TENANT {
            return Err(KvError::Unavailable(format!(
                "this tenant's key-value writes waiting for the disk ({} writes, {} bytes) hold \
                 its share ({MAX_PENDING_WRITES_PER_TENANT} writes, {MAX_PENDING_PER_TENANT} \
                 bytes); try again later",
                own.writes, own.bytes
            )));
        }
        Ok(())
    }

    pub(super) fn send(&self, write: KvWrite) {
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        self.stats
            .pending_bytes
            .fetch_add(write.bytes(), Ordering::Relaxed);
        if let Some((tenant, _)) = write.scope() {
            let mut by_tenant = self.stats.tenants();
            let waiting = by_tenant.entry(tenant.clone()).or_default();
            waiting.bytes += write.bytes() + WRITE_OVERHEAD;
            waiting.writes += 1;
        }
        // The thread only stops when every sender is gone, so this cannot fail while `self` lives.
        let _ = self.tx.send(Message::Write(write));
    }

    /// A barrier behind every write queued so far, that fails if any of them is given up.
    pub(super) fn barrier(&self) -> Barrier {
        self.barrier_for(None)
    }

    /// A barrier behind every write queued so far, that fails if one of them to the store
    /// `scope` (any, if `None`) is given up.
    pub(super) fn barrier_for(&self, scope: Option<Scope>) -> Barrier {
        let (done, wait) = tokio::sync::oneshot::channel();
        if let Err(mpsc::SendError(Message::Barrier(done, _))) =
            self.tx.send(Message::Barrier(done, scope))
        {
            let _ = done.send(Err("the key-value writer has stopped".into()));
        }
        Barrier(wait)
    }
}

/// How long a failed commit is retried (a disk briefly full, a lock held by another process)
/// before its writes are given up, from [`FIRST_RETRY`] doubling: about 30 s in all.
const RETRIES: u32 = 8;
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Why a commit failed for good.
enum Failed {
    /// The database refused the data ([`Refused`]): at once, without retries.
    Refused(String),
    /// Every retry failed.
    Retried(String),
}

/// Commits `writes`, retrying a failed commit unless the database refused the data: later writes
/// wait behind them, so the disk still sees each key's writes in order.
fn apply(sink: &dyn KvSink, writes: &[KvWrite]) -> Result<(), Failed> {
    let mut wait = FIRST_RETRY;
    let mut attempt = 0;
    loop {
        match sink.kv_apply(writes) {
            Ok(()) => return Ok(()),
            Err(error) if error.downcast_ref::<Refused>().is_some() => {
                return Err(Failed::Refused(error.to_string()));
            }
            Err(error) if attempt < RETRIES => {
                tracing::warn!(writes = writes.len(), %error, "cannot commit key-value writes; retrying");
                std::thread::sleep(wait);
                wait *= 2;
                attempt += 1;
            }
            Err(error) => return Err(Failed::Retried(error.to_string())),
        }
    }
}

/// Writes given up, by their positions in the batch, and why; and whether the database failed
/// even its retries (the rest of the batch is then given up without trying: its parts would each
/// wait out the retries again).
#[derive(Default)]
struct GivenUp {
    writes: Vec<(Range<usize>, String)>,
    down: bool,
}

/// Commits `writes`, the batch's from `offset` on. A commit the database refuses for its data is
/// split in halves, each committed on its own, in order, down to the single writes it refuses:
/// those alone are given up (about twice the batch's rows are sent in all).
fn commit(sink: &dyn KvSink, writes: &[KvWrite], offset: usize, given_up: &mut GivenUp) {
    let applied = match given_up.down {
        true => Err(Failed::Retried(
            "an earlier part of the batch could not be committed".into(),
        )),
        false => apply(sink, writes),
    };
    match applied {
        Ok(()) => {}
        Err(Failed::Refused(_)) if writes.len() > 1 => {
            let half = writes.len() / 2;
            commit(sink, &writes[..half], offset, given_up);
            commit(sink, &writes[half..], offset + half, given_up);
        }
        Err(failed) => {
            let error = match failed {
                Failed::Refused(error) => error,
                Failed::Retried(error) => {
                    given_up.down = true;
                    error
                }
            };
            let (tenant, store) = writes
                .first()
                .and_then(KvWrite::scope)
                .map_or(("", ""), |(t, s)| (&**t, &**s));
            tracing::error!(
                writes = writes.len(),
                tenant,
                store,
                %error,
                "cannot write key-value changes to the database; they are kept in memory \
                 only until the server restarts"
            );
            given_up.writes.push((offset..offset + writes.len(), error));
        }
    }
}

/// What a barrier queued after the batch's first `position` writes answers: the error of a
/// write before it given up (to its store, if it has one), else success.
fn outcome(
    writes: &[KvWrite],
    given_up: &GivenUp,
    position: usize,
    scope: Option<&Scope>,
) -> Result<(), String> {
    let lost = given_up.writes.iter().find(|(lost, _)| {
        lost.start < position
            && scope.is_none_or(|scope| {
                writes[lost.start..lost.end.min(position)]
                    .iter()
                    .any(|write| write.is_in(scope))
            })
    });
    match lost {
        Some((_, error)) => Err(error.clone()),
        None => Ok(()),
    }
}

fn run(sink: &dyn KvSink, rx: &mpsc::Receiver<Message>, stats: &WriterStats) {
    while let Ok(first) = rx.recv() {
        std::thread::sleep(TICK);
        let mut writes = Vec::new();
        let mut barriers = Vec::new();
        for message in std::iter::once(first).chain(rx.try_iter()) {
            match message {
                Message::Write(write) => writes.push(write),
                Message::Barrier(done, scope) => barriers.push((writes.len(), scope, done)),
            }
        }
        let bytes: usize = writes.iter().map(KvWrite::bytes).sum();
        let mut given_up = GivenUp::default();
        if !writes.is_empty() {
            commit(sink, &writes, 0, &mut given_up);
        }
        let failed: usize = given_up.writes.iter().map(|(lost, _)| lost.len()).sum();
        stats
            .committed
            .fetch_add((writes.len() - failed) as u64, Ordering::Relaxed);
        stats.failed.fetch_add(failed as u64, Ordering::Relaxed);
        stats.pending.fetch_sub(writes.len(), Ordering::Relaxed);
        stats.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        stats.settle(&writes);
        for (position, scope, done) in barriers {
            let _ = done.send(outcome(&writes, &given_up, position, scope.as_ref()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// Refuses its first `failures` commits, then keeps every write it is given.
    #[derive(Default)]
    struct Flaky {
        failures: AtomicU32,
        kept: Mutex<Vec<KvWrite>>,
    }

    impl KvSink for Flaky {
        fn kv_rows(&self, _now_ms: i64) -> Result<Vec<KvRow>, SinkError> {
            Ok(Vec::new())
        }

        fn kv_apply(&self, writes: &[KvWrite]) -> Result<(), SinkError> {
            if self
                .failures
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err("disk full".into());
            }
            self.kept.lock().unwrap().extend_from_slice(writes);
            Ok(())
        }
    }

    fn put(key: &str) -> KvWrite {
        put_in("s", key, "v")
    }

    fn put_in(store: &str, key: &str, value: &str) -> KvWrite {
        KvWrite::Put(KvRow {
            tenant: Arc::from("t"),
            store: Arc::from(store),
            key: key.to_owned(),
            value: value.to_owned(),
            expires_at_ms: None,
        })
    }

    /// Refuses, as the data's fault, every commit that holds a value `bad`; keeps the others.
    #[derive(Default)]
    struct Picky {
        commits: AtomicU32,
        kept: Mutex<Vec<KvWrite>>,
    }

    impl KvSink for Picky {
        fn kv_rows(&self, _now_ms: i64) -> Result<Vec<KvRow>, SinkError> {
            Ok(Vec::new())
        }

        fn kv_apply(&self, writes: &[KvWrite]) -> Result<(), SinkError> {
            self.commits.fetch_add(1, Ordering::Relaxed);
            if writes
                .iter()
                .any(|w| matches!(w, KvWrite::Put(row) if row.value == "bad"))
            {
                return Err(Box::new(Refused("cannot hold \"bad\"".into())));
            }
            self.kept.lock().unwrap().extend_from_slice(writes);
            Ok(())
        }
    }

    #[test]
    fn a_write_the_database_refuses_is_given_up_alone_at_once() {
        let sink = Arc::new(Picky::default());
        let writer = Writer::start(sink.clone()).unwrap();
        let scope = |store: &str| Some((Arc::from("t"), Arc::from(store)));
        let started = std::time::Instant::now();
        let before = writer.barrier_for(scope("poison"));
        let mut sent = Vec::new();
        for i in 0..50 {
            let write = match i {
                20 => put_in("poison", "k", "bad"),
                _ => put_in("s", &format!("k{i:02}"), "v"),
            };
            sent.push(write.clone());
            writer.send(write);
        }
        let poisoned = writer.barrier_for(scope("poison"));
        let others = writer.barrier_for(scope("s"));
        let everything = writer.barrier();
        assert_eq!(before.wait_blocking(), Ok(()));
        assert_eq!(others.wait_blocking(), Ok(()));
        assert!(poisoned.wait_blocking().unwrap_err().contains("bad"));
        assert!(everything.wait_blocking().is_err());
        // No retries: split in halves down to the one refused write, the rest kept in order.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        sent.remove(20);
        assert_eq!(*sink.kept.lock().unwrap(), sent);
        assert!(sink.commits.load(Ordering::Relaxed) <= 20);
        assert_eq!(writer.stats().committed.load(Ordering::Relaxed), 49);
        assert_eq!(writer.stats().failed.load(Ordering::Relaxed), 1);
        assert_eq!(writer.stats().pending(), 0);
        // And the writer goes on.
        writer.send(put("after"));
        assert_eq!(writer.barrier().wait_blocking(), Ok(()));
    }

    #[test]
    fn a_failed_commit_is_retried_and_nothing_is_lost_or_reordered() {
        let sink = Arc::new(Flaky {
            failures: AtomicU32::new(2),
            ..Flaky::default()
        });
        let writer = Writer::start(sink.clone()).unwrap();
        writer.send(put("a"));
        writer.send(put("b"));
        writer
            .barrier()
            .wait_blocking()
            .expect("committed after the retries");
        writer.send(put("c"));
        writer.barrier().wait_blocking().expect("committed");
        assert_eq!(*sink.kept.lock().unwrap(), [put("a"), put("b"), put("c")]);
        assert_eq!(writer.stats().committed.load(Ordering::Relaxed), 3);
        assert_eq!(writer.stats().pending(), 0);
    }

    /// Holds every commit until opened.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: std::sync::Condvar,
    }

    impl KvSink for Gate {
        fn kv_rows(&self, _now_ms: i64) -> Result<Vec<KvRow>, SinkError> {
            Ok(Vec::new())
        }

        fn kv_apply(&self, _writes: &[KvWrite]) -> Result<(), SinkError> {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
            Ok(())
        }
    }

    fn put_for(tenant: &str, key: &str, value: &str) -> KvWrite {
        KvWrite::Put(KvRow {
            tenant: Arc::from(tenant),
            store: Arc::from("s"),
            key: key.to_owned(),
            value: value.to_owned(),
            expires_at_ms: None,
        })
    }

    #[test]
    fn a_tenant_whose_writes_hold_its_share_is_refused_and_the_others_are_not() {
        let gate = Arc::new(Gate::default());
        let writer = Writer::start(gate.clone()).unwrap();
        let big = "x".repeat(1 << 20);
        let mut sent = 0;
        while writer.room("hog").is_ok() {
            writer.send(put_for("hog", &format!("k{sent}"), &big));
            sent += 1;
            assert!(sent <= 64, "the share never filled");
        }
        // A quarter of 64 MiB: sixteen writes of 1 MiB (and their keys and overhead).
        assert_eq!(sent, 16);
        let refused = writer.room("hog").unwrap_err().to_string();
        assert!(refused.contains("share"), "{refused}");
        assert!(writer.room("other").is_ok(), "another tenant was refused");

        *gate.open.lock().unwrap() = true;
        gate.opened.notify_all();
        writer.barrier().wait_blocking().expect("committed");
        assert_eq!(writer.stats().tenant_waiting("hog"), Waiting::default());
        assert!(writer.room("hog").is_ok(), "the share was not given back");
    }

    #[test]
    fn a_tenant_rewriting_a_small_key_fills_its_share_of_writes_not_the_servers() {
        let gate = Arc::new(Gate::default());
        let writer = Writer::start(gate.clone()).unwrap();
        let mut sent = 0;
        while writer.room("tiny").is_ok() {
            writer.send(put_for("tiny", "k", "1"));
            sent += 1;
        }
        assert_eq!(sent, MAX_PENDING_WRITES_PER_TENANT);
        assert!(writer.room("other").is_ok(), "another tenant was refused");
        *gate.open.lock().unwrap() = true;
        gate.opened.notify_all();
        writer.barrier().wait_blocking().expect("committed");
        assert!(writer.room("tiny").is_ok());
    }
}
