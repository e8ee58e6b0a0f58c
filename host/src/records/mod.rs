//! Decision records leave the request path through a bounded channel and are written in batches
//! by one background thread. When the writer falls behind and the channel is full, a record is
//! dropped and counted: the call is never slowed. Old records are pruned by age.
//!
//! By default the writer runs in the background class ([`WriterPriority::Background`], Linux's
//! `SCHED_IDLE`): it uses only CPU time that requests leave idle, and a request-serving thread that
//! wakes up preempts it at once. Below full CPU that costs nothing and loses nothing; with both
//! cores saturated by requests, records are dropped (and counted) rather than slowing calls.
//!
//! Two details keep a saturated machine's calls from paying for records. The writer works in
//! bounded transactions ([`BATCH`] records) and gives up the CPU after each one, and in the idle
//! class any request thread that wakes up takes the core from it mid-transaction. And the request
//! path checks for room before it builds a record, so a record that would be dropped costs a load
//! and an increment, nothing more.
//!
//! A transaction costs the store a fixed amount besides its rows (about 0.35 ms on SQLite, from
//! `benches/records.rs` at several transaction sizes), so the writer gathers records until it
//! holds [`GATHER`] of them or the oldest has waited [`MAX_WAIT`]; a flush has what it holds
//! written at the next poll. At 2,000 calls a second that is a transaction of 160 records every
//! 80 ms rather than one of 40 every 20 ms. From about 6,400 calls a second up, each poll finds
//! `GATHER` or more and writes them, as before: larger transactions there would cost less CPU,
//! but lengthened the calls' tail (p99 up by 0.07 – 0.35 ms at 10,000 a second, with
//! transactions of 1,024).

mod build;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};

pub use build::{Answer, Subject, Usage};

use crate::store::{DecisionRecord, RecordSink, now_ms};

/// The part of the queue a success's record may take: the last quarter is kept for failures'.
pub const SUCCESS_SHARE: (usize, usize) = (3, 4);

/// How many records may wait before a success's is dropped.
fn success_room(room: usize) -> usize {
    (room * SUCCESS_SHARE.0 / SUCCESS_SHARE.1).max(1)
}

/// Records waiting to be written before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 16 * 1024;
/// The most records written in one transaction, after which the writer yields its core to any
/// thread that wants it. Each commit rewrites the pages it touched, those the rows fill and the
/// tails of the indexes alike: taking a whole poll's records in one transaction (a few ms of work
/// at the highest rates, in the idle class, so preempted by any request) writes each such page
/// once rather than once per 64 records. See `benches/records.rs` for the figures.
pub const BATCH: usize = 1024;
/// How often the writer takes what has queued up in the channel; it touches the store only when
/// a write is due. The longest a flush waits to be seen.
const POLL: Duration = Duration::from_millis(20);
/// The records the writer gathers before it writes them.
pub const GATHER: usize = 128;
/// The longest a record waits in the writer before it is written, unless [`GATHER`] records or a
/// flush come first (so at most this plus `POLL` after its call).
pub const MAX_WAIT: Duration = Duration::from_millis(250);
/// How often old records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How the writer thread competes with the threads serving requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterPriority {
    /// Only CPU time nothing else wants (Linux `SCHED_IDLE`; elsewhere, as `Normal`).
    Background,
    /// Like any other thread: every record is written, and calls pay for it at high load.
    Normal,
}

/// Counters the writer and the request path share.
#[derive(Debug, Default)]
pub struct RecordStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    pub pruned: AtomicU64,
    /// Records in the channel: the request path reads it to drop a record before building it.
    queued: AtomicUsize,
}

/// The request path's end of the channel. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: Option<SyncSender<Message>>,
    /// The channel's capacity.
    room: usize,
    stats: Arc<RecordStats>,
}

impl Recorder {
    /// A recorder that keeps nothing (records off).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            room: 0,
            stats: Arc::default(),
        }
    }

    /// Starts the writer thread over `store`; records older than `retention` are pruned. A
    /// record is written at most `max_wait` (the server's is [`MAX_WAIT`]) after the writer took
    /// it from the queue, sooner when [`GATHER`] are waiting or a flush asks.
    pub fn start(
        store: Arc<dyn RecordSink>,
        queue: usize,
        retention: Duration,
        priority: WriterPriority,
        max_wait: Duration,
    ) -> Self {
        let room = queue.max(1);
        let (tx, rx) = mpsc::sync_channel(room);
        let stats = Arc::new(RecordStats::default());
        let writer_stats = stats.clone();
        let spawned = std::thread::Builder::new()
            .name("passthru-records".into())
            .spawn(move || {
                if priority == WriterPriority::Background {
                    yield_to_requests();
                }
                write_loop(store, rx, writer_stats, retention, max_wait);
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the decision-record writer; records are off");
            return Self::disabled();
        }
        Self {
            tx: Some(tx),
            room,
            stats,
        }
    }

    /// Queues the record `build` makes, or drops and counts it if the writer is behind; then
    /// `build` is not called at all. Never waits. Returns whether the record was queued.
    ///
    /// A failure's record (`failure`) may take the whole queue; a success's only
    /// [`SUCCESS_SHARE`] of it, so that when the writer falls behind, the records an operator
    /// needs most (why a call fell back) are the last to go.
    pub fn record(&self, failure: bool, build: impl FnOnce() -> DecisionRecord) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        let room = match failure {
            true => self.room,
            false => success_room(self.room),
        };
        // The count may lag the channel by a record or two either way; `try_send` below is what
        // enforces the bound, this only spares building what would surely be dropped.
        if self.stats.queued.load(Ordering::Relaxed) >= room {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if tx.try_send(Message::Record(Box::new(build()))).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Waits (up to `timeout`) until every record queued before this call is written. For
    /// shutdown and tests; never on the request path.
    ///
    /// Returns whether the writer confirmed in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        let (ack, done) = mpsc::sync_channel(1);
        if tx.send(Message::Flush(ack)).is_err() {
            return false;
        }
        done.recv_timeout(timeout).is_ok()
    }

    pub fn stats(&self) -> &RecordStats {
        &self.stats
    }
}

/// What travels to the writer: a record, or a request to confirm all before it are written.
#[derive(Debug)]
enum Message {
    Record(Box<DecisionRecord>),
    Flush(SyncSender<()>),
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class: it runs only on CPU time no other
/// thread wants, and a request-serving thread that wakes up preempts it at once.
#[cfg(target_os = "linux")]
pub(crate) fn yield_to_requests() {
    let param = libc::sched_param { sched_priority: 0 };
    #[allow(unsafe_code)]
    // SAFETY: `sched_setscheduler` with pid 0 changes only the calling thread's policy, and
    // `param` is a valid, initialised `sched_param` that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower a background thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn yield_to_requests() {}

fn write_loop(
    store: Arc<dyn RecordSink>,
    rx: Receiver<Message>,
    stats: Arc<RecordStats>,
    retention: Duration,
    max_wait: Duration,
) {
    // The records taken from the channel and not yet written (at most `BATCH`: a backlog is
    // written in transactions of that size), and when the oldest of them was taken.
    let mut batch = Vec::with_capacity(BATCH);
    let mut oldest: Option<Instant> = None;
    let mut flushes = Vec::new();
    let mut last_prune: Option<Instant> = None;
    loop {
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            let cutoff = now_ms() - retention.as_millis() as i64;
            match store.prune_decisions(cutoff) {
                Ok(n) => {
                    stats.pruned.fetch_add(n, Ordering::Relaxed);
                }
                Err(error) => tracing::warn!(%error, "cannot prune old decision records"),
            }
        }
        // Sleep, then take whatever has queued up. The writer never waits on the channel itself:
        // a receiver blocked there would be woken by every record, a context switch per call on
        // the request path's cores.
        std::thread::sleep(POLL);
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(Message::Record(record)) => {
                    stats.queued.fetch_sub(1, Ordering::Relaxed);
                    oldest.get_or_insert_with(Instant::now);
                    batch.push(*record);
                    if batch.len() == BATCH {
                        write_batch(store.as_ref(), &mut batch, &stats);
                        oldest = None;
                        // On a busy machine the scheduler's turn for this thread can be
                        // milliseconds long: hand the core back to the request threads.
                        std::thread::yield_now();
                    }
                }
                Ok(Message::Flush(ack)) => flushes.push(ack),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let asked = closed || !flushes.is_empty() || batch.len() >= GATHER;
        if due(oldest, Instant::now(), max_wait, asked) {
            write_batch(store.as_ref(), &mut batch, &stats);
            oldest = None;
        }
        for ack in flushes.drain(..) {
            let _ = ack.send(());
        }
        if closed {
            return;
        }
    }
}

/// Whether the records the writer holds are written now: once the oldest (taken at `oldest`) has
/// waited `max_wait`, or when `asked` (a flush, the channel's end, or [`GATHER`] records held).
/// Nothing held, nothing to write.
fn due(oldest: Option<Instant>, now: Instant, max_wait: Duration, asked: bool) -> bool {
    oldest.is_some_and(|taken| asked || now.saturating_duration_since(taken) >= max_wait)
}

fn write_batch(store: &dyn RecordSink, batch: &mut Vec<DecisionRecord>, stats: &RecordStats) {
    if batch.is_empty() {
        return;
    }
    match store.insert_decisions(batch) {
        Ok(()) => {
            stats
                .written
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Err(error) => {
            stats
                .failed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(%error, records = batch.len(), "cannot write decision records");
        }
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::sandbox::Branch;
    use crate::store::StoreResult;

    /// A sink that can be held shut, to play a writer that has fallen behind.
    #[derive(Default)]
    struct Sink {
        written: Mutex<Vec<String>>,
        gate: Mutex<()>,
        /// The most records one write was handed.
        largest: Mutex<usize>,
        /// The size of each transaction, in order.
        transactions: Mutex<Vec<usize>>,
        /// Set when a write has begun (and may be waiting at the gate).
        entered: std::sync::atomic::AtomicBool,
        pruned_before: Mutex<Vec<i64>>,
    }

    impl RecordSink for Sink {
        fn insert_decisions(&self, records: &[DecisionRecord]) -> StoreResult<()> {
            self.entered.store(true, Ordering::Relaxed);
            let _open = self.gate.lock().unwrap();
            let mut largest = self.largest.lock().unwrap();
            *largest = (*largest).max(records.len());
            self.transactions.lock().unwrap().push(records.len());
            let mut written = self.written.lock().unwrap();
            written.extend(records.iter().filter_map(|r| r.call_sid.clone()));
            Ok(())
        }

        fn prune_decisions(&self, before_ms: i64) -> StoreResult<u64> {
            self.pruned_before.lock().unwrap().push(before_ms);
            Ok(0)
        }
    }

    fn record(sid: usize) -> DecisionRecord {
        DecisionRecord {
            id: 0,
            tenant: "t".into(),
            flow: "f".into(),
            plugin: "p".into(),
            version: 1,
            call_sid: Some(format!("call{sid}")),
            branch: Branch::Success,
            outcome: "decided".into(),
            reason: None,
            error: None,
            answer: None,
            fuel_used: 1,
            elapsed_us: 1,
            log: Vec::new(),
            log_dropped: 0,
            outbound: Vec::new(),
            at_ms: now_ms(),
            query: None,
            replay: None,
        }
    }

    #[test]
    fn records_are_written_in_order_and_flush_waits_for_them() {
        let sink = Arc::new(Sink::default());
        let total = BATCH + 300;
        let recorder = Recorder::start(
            sink.clone(),
            2 * BATCH,
            Duration::from_secs(3600),
            WriterPriority::Background,
            MAX_WAIT,
        );
        for i in 0..total {
            recorder.record(true, || record(i));
        }
        assert!(recorder.flush(Duration::from_secs(10)));
        let written = sink.written.lock().unwrap().clone();
        assert_eq!(written.len(), total);
        assert_eq!(written[0], "call0");
        assert_eq!(written[total - 1], format!("call{}", total - 1));
        assert_eq!(
            recorder.stats().written.load(Ordering::Relaxed),
            total as u64
        );
        assert_eq!(recorder.stats().dropped.load(Ordering::Relaxed), 0);
        // In transactions of at most `BATCH`, each one followed by a yield.
        assert_eq!(*sink.largest.lock().unwrap(), BATCH);
        // Pruning ran at start, with a cutoff an hour back.
        let cutoffs = sink.pruned_before.lock().unwrap().clone();
        assert_eq!(cutoffs.len(), 1);
        assert!((now_ms() - 3_600_000 - cutoffs[0]).abs() < 60_000);
    }

    /// The scheduling policies of this process's threads named `name` (as the kernel keeps it:
    /// cut to 15 bytes), from `/proc`: field 41 of `stat`, 0 for normal, 5 for idle.
    #[cfg(target_os = "linux")]
    fn policies_of_threads(name: &str) -> Vec<u32> {
        let short = &name[..name.len().min(15)];
        let mut policies = Vec::new();
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            if comm.trim() != short {
                continue;
            }
            // The fields after `(comm)` start with the state, field 3.
            let policy = stat
                .rfind(')')
                .and_then(|end| stat[end + 2..].split(' ').nth(41 - 3))
                .and_then(|p| p.parse::<u32>().ok());
            policies.extend(policy);
        }
        policies
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_background_writer_runs_in_the_idle_class() {
        const SCHED_IDLE: u32 = 5;
        let sink = Arc::new(Sink::default());
        let recorder = Recorder::start(
            sink.clone(),
            16,
            Duration::from_secs(3600),
            WriterPriority::Background,
            MAX_WAIT,
        );
        // The writer has set its class by the time it has written a record.
        recorder.record(true, || record(1));
        assert!(recorder.flush(Duration::from_secs(10)));
        let policies = policies_of_threads("passthru-records");
        assert!(
            policies.contains(&SCHED_IDLE),
            "the writers' policies: {policies:?}"
        );
    }

    #[test]
    fn a_writer_that_falls_behind_costs_records_not_time() {
        let (sink, recorder) = writer(8, MAX_WAIT);
        let held = sink.gate.lock().unwrap();
        // The writer takes one batch and blocks on the gate; the queue then fills. Were
        // `record` to wait for room, this loop would never end while the gate is held.
        for i in 0..1000 {
            recorder.record(true, || record(i));
        }
        let dropped = recorder.stats().dropped.load(Ordering::Relaxed);
        assert!(
            dropped >= 1000u64.saturating_sub(8 + BATCH as u64),
            "dropped {dropped}"
        );
        // Once the writer is stuck at the gate, eight more records fill the channel for sure;
        // then a record that would be dropped is not even built.
        until_entered(&sink);
        for i in 1000..1008 {
            recorder.record(true, || record(i));
        }
        let built = std::cell::Cell::new(0);
        for i in 1008..1100 {
            recorder.record(true, || {
                built.set(built.get() + 1);
                record(i)
            });
        }
        assert_eq!(built.get(), 0, "records built only to be dropped");
        let dropped = recorder.stats().dropped.load(Ordering::Relaxed);
        drop(held);
        assert!(recorder.flush(Duration::from_secs(10)));
        let written = recorder.stats().written.load(Ordering::Relaxed);
        assert_eq!(written + dropped, 1100);
        assert_eq!(recorder.stats().queued.load(Ordering::Relaxed), 0);
    }

    /// With the writer stuck, successes fill only their share of the queue; failures still find
    /// room after them, until the queue itself is full.
    #[test]
    fn under_pressure_failures_are_kept_after_successes_are_dropped() {
        let (sink, recorder) = writer(8, MAX_WAIT);
        let held = sink.gate.lock().unwrap();
        // One record takes the writer to the gate, where it stays.
        assert!(recorder.record(true, || record(0)));
        until_entered(&sink);
        let successes = (1..100)
            .filter(|&i| recorder.record(false, || record(i)))
            .count();
        assert_eq!(
            successes,
            success_room(8),
            "successes take 6 of the 8 places"
        );
        let failures = (100..200)
            .filter(|&i| recorder.record(true, || record(i)))
            .count();
        assert_eq!(failures, 8 - success_room(8), "failures take the rest");
        drop(held);
        assert!(recorder.flush(Duration::from_secs(10)));
    }

    /// A writer at normal priority over a fresh sink: a queue of `queue`, records written once
    /// one has waited `max_wait` (or sooner).
    fn writer(queue: usize, max_wait: Duration) -> (Arc<Sink>, Recorder) {
        let sink = Arc::new(Sink::default());
        let recorder = Recorder::start(
            sink.clone(),
            queue,
            Duration::from_secs(3600),
            WriterPriority::Normal,
            max_wait,
        );
        (sink, recorder)
    }

    /// Waits (up to 10 s) until the writer has begun a write to `sink` (and may be waiting at its
    /// gate).
    fn until_entered(sink: &Sink) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sink.entered.load(Ordering::Relaxed) {
            assert!(
                Instant::now() < deadline,
                "the writer never reached the sink"
            );
            std::thread::yield_now();
        }
    }

    /// Waits (up to 10 s) until `sink` holds at least `n` records.
    fn until_written(sink: &Sink, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.written.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "{n} records never written");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn records_are_written_when_the_oldest_has_waited_or_when_asked() {
        let taken = Instant::now();
        let wait = Duration::from_millis(250);
        assert!(
            !due(None, taken, wait, true),
            "nothing held, nothing to write"
        );
        assert!(!due(Some(taken), taken + wait / 2, wait, false));
        assert!(due(Some(taken), taken + wait, wait, false));
        assert!(due(Some(taken), taken, wait, true), "a flush does not wait");
        // A clock read before `taken` (another thread's) is not a wait.
        assert!(!due(Some(taken + wait), taken, wait, false));
    }

    /// Records that arrive over several of the writer's polls share one transaction: here the
    /// flush is what writes them, since none can wait an hour.
    #[test]
    fn records_taken_over_several_polls_share_one_transaction() {
        let (sink, recorder) = writer(64, Duration::from_secs(3600));
        for group in 0..3 {
            for i in 0..4 {
                assert!(recorder.record(false, || record(group * 4 + i)));
            }
            // Long enough that each group is taken by a poll of its own.
            std::thread::sleep(POLL * 2);
        }
        assert!(
            sink.transactions.lock().unwrap().is_empty(),
            "written early"
        );
        assert!(recorder.flush(Duration::from_secs(10)));
        assert_eq!(*sink.transactions.lock().unwrap(), [12]);
        assert_eq!(sink.written.lock().unwrap().len(), 12);
    }

    /// `GATHER` records are written as soon as the writer holds them, whatever their age; fewer
    /// wait.
    #[test]
    fn gathered_records_are_written_without_waiting() {
        let (sink, recorder) = writer(2 * GATHER, Duration::from_secs(3600));
        for i in 0..GATHER {
            assert!(recorder.record(false, || record(i)));
        }
        until_written(&sink, GATHER);
        assert_eq!(*sink.transactions.lock().unwrap(), [GATHER]);
        for i in GATHER..GATHER + 3 {
            assert!(recorder.record(false, || record(i)));
        }
        assert!(recorder.flush(Duration::from_secs(10)));
        assert_eq!(*sink.transactions.lock().unwrap(), [GATHER, 3]);
    }

    /// Without a flush or `GATHER` records, a record is written once it has waited `max_wait`.
    #[test]
    fn a_record_is_written_once_it_has_waited() {
        let (sink, recorder) = writer(64, Duration::from_millis(30));
        assert!(recorder.record(false, || record(7)));
        until_written(&sink, 1);
        assert_eq!(*sink.written.lock().unwrap(), ["call7"]);
        assert_eq!(recorder.stats().written.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_disabled_recorder_keeps_nothing() {
        let recorder = Recorder::disabled();
        let built = std::cell::Cell::new(false);
        recorder.record(true, || {
            built.set(true);
            record(1)
        });
        assert!(!built.get(), "a disabled recorder builds no record");
        assert!(recorder.flush(Duration::from_millis(10)));
        assert_eq!(recorder.stats().dropped.load(Ordering::Relaxed), 0);
    }
}
