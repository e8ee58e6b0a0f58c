//! The thread that writes key-value changes to disk, in order, in batches.
//!
//! A change is queued under its bucket's lock (see the module above), so the disk applies each
//! key's changes in the order memory did. The thread sleeps while nothing is queued; once a change
//! arrives it waits one [`TICK`] for more, then commits all of them in one transaction: at most one
//! wake-up per tick however many plugins write, and a plugin never waits for it.
//!
//! A [`Barrier`] is answered once everything queued before it is committed (or failed): the admin
//! API waits on one, so its `200` means the change is on disk.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::KvError;

/// How long the writer gathers changes before it commits them: the longest a plugin's write
/// waits to reach the disk, and about the longest an admin write waits for its answer.
pub const TICK: Duration = Duration::from_millis(10);
/// Changes that may wait for the disk before plugins' writes are refused (`unavailable`).
pub const MAX_PENDING_WRITES: usize = 100_000;
/// Bytes of keys and values that may wait for the disk before plugins' writes are refused.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

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
    fn bytes(&self) -> usize {
        match self {
            KvWrite::Put(row) => row.key.len() + row.value.len(),
            KvWrite::Delete { key, .. } => key.len(),
            KvWrite::Import(rows) => rows.iter().map(|r| r.key.len() + r.value.len()).sum(),
            KvWrite::Sweep { .. } => 0,
        }
    }
}

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
    /// The database fails; nothing was applied.
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
    Barrier(tokio::sync::oneshot::Sender<Result<(), String>>),
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

    /// Whether a plugin's write may be queued.
    ///
    /// # Errors
    /// [`KvError::Unavailable`] when the disk is too far behind.
    pub(super) fn room(&self) -> Result<(), KvError> {
        let pending = self.stats.pending.load(Ordering::Relaxed);
        let bytes = self.stats.pending_bytes.load(Ordering::Relaxed);
        if pending >= MAX_PENDING_WRITES || bytes >= MAX_PENDING_BYTES {
            return Err(KvError::Unavailable(format!(
                "{pending} key-value writes ({bytes} bytes) are waiting for the disk; try again \
                 later"
            )));
        }
        Ok(())
    }

    pub(super) fn send(&self, write: KvWrite) {
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        self.stats
            .pending_bytes
            .fetch_add(write.bytes(), Ordering::Relaxed);
        // The thread only stops when every sender is gone, so this cannot fail while `self` lives.
        let _ = self.tx.send(Message::Write(write));
    }

    pub(super) fn barrier(&self) -> Barrier {
        let (done, wait) = tokio::sync::oneshot::channel();
        if let Err(mpsc::SendError(Message::Barrier(done))) = self.tx.send(Message::Barrier(done)) {
            let _ = done.send(Err("the key-value writer has stopped".into()));
        }
        Barrier(wait)
    }
}

/// How long a failed commit is retried (a disk briefly full, a lock held by another process)
/// before its writes are given up, from [`FIRST_RETRY`] doubling: about 30 s in all.
const RETRIES: u32 = 8;
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Commits `writes`, retrying a failed commit: later writes wait behind them, so the disk still
/// sees each key's writes in order.
fn apply(sink: &dyn KvSink, writes: &[KvWrite]) -> Result<(), String> {
    let mut wait = FIRST_RETRY;
    let mut attempt = 0;
    loop {
        match sink.kv_apply(writes) {
            Ok(()) => return Ok(()),
            Err(error) if attempt < RETRIES => {
                tracing::warn!(writes = writes.len(), %error, "cannot commit key-value writes; retrying");
                std::thread::sleep(wait);
                wait *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error.to_string()),
        }
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
                Message::Barrier(done) => barriers.push(done),
            }
        }
        let bytes: usize = writes.iter().map(KvWrite::bytes).sum();
        let result = match writes.is_empty() {
            true => Ok(()),
            false => apply(sink, &writes),
        };
        match &result {
            Ok(()) => stats
                .committed
                .fetch_add(writes.len() as u64, Ordering::Relaxed),
            Err(error) => {
                tracing::error!(
                    writes = writes.len(),
                    %error,
                    "cannot write key-value changes to the database; they are kept in memory \
                     only until the server restarts"
                );
                stats
                    .failed
                    .fetch_add(writes.len() as u64, Ordering::Relaxed)
            }
        };
        stats.pending.fetch_sub(writes.len(), Ordering::Relaxed);
        stats.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        for done in barriers {
            let _ = done.send(result.clone());
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
        KvWrite::Put(KvRow {
            tenant: Arc::from("t"),
            store: Arc::from("s"),
            key: key.to_owned(),
            value: "v".to_owned(),
            expires_at_ms: None,
        })
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
}
